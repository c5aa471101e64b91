"""The nightly deployment (concurrency, one failure among many) and resuming a failed snapshot run."""

from __future__ import annotations

import json
import time

import pytest
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from storage.store import ArchiveStore
from tests.e2e.deployments.lab import Deployed, artifacts, ever_ran, wait_final

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.server]


def test_a_second_nightly_run_is_cancelled_while_one_runs(deployed: Deployed) -> None:
    h1 = deployed.host1
    h1.run_workload("overlap")
    params = {"containers": ["overlap"], "label": None}
    deployed.stack.stop_worker("host1")  # both runs are queued, so the worker starts them together
    try:
        with temporary_settings({PREFECT_API_URL: deployed.stack.api}):
            first = run_deployment("ferry-nightly/host1", parameters=params, timeout=0)
            second = run_deployment("ferry-nightly/host1", parameters=params, timeout=0)
    finally:
        deployed.stack.restart_worker("host1")

    ended = sorted((wait_final(deployed, r.id) for r in (first, second)), key=lambda r: r.state.name)
    assert [r.state.name for r in ended] == ["Cancelled", "Completed"], [r.state for r in ended]
    assert not ever_ran(deployed, ended[0].id) and "limit" in (ended[0].state.message or ""), ended[0].state
    assert len(ArchiveStore(deployed.store, deployed.options).archives("overlap")) == 1
    assert h1.state("overlap") == "running"


def test_nightly_snapshots_the_others_when_one_fails(deployed: Deployed) -> None:
    h1 = deployed.host1
    h1.run_workload("night1")
    h1.run_workload("night2")

    run = deployed.run("ferry-nightly/host1", containers=["night1", "ghost", "night2"], label=None)

    assert run.state.is_failed(), run.state
    assert "1 of 3" in (run.state.message or "")
    tables = [a for a in artifacts(deployed, run.id) if a.type == "table"]
    assert tables, "no table artifact"
    rows = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    status = {r["container"]: r["status"] for r in rows}
    assert status == {"night1": "ok", "ghost": "FAILED", "night2": "ok"}
    store = ArchiveStore(deployed.store, deployed.options)
    assert store.archives("night1") and store.archives("night2")
    assert h1.state("night1") == "running" and h1.state("night2") == "running"


def test_retry_after_failed_upload_resumes_without_a_new_dump(deployed: Deployed) -> None:
    h1 = deployed.host1
    h1.run_workload("resumer")
    deployed.inject("host1", "publish", "publish", "publish")

    run = deployed.run("ferry-snapshot/host1", container="resumer", to=deployed.store, leave_running=True)
    assert run.state.is_failed(), run.state

    deployed.stack.cli("flow-run", "retry", str(run.id))
    deadline = time.monotonic() + 600
    while True:
        with deployed.client() as client:
            state = client.read_flow_run(run.id).state
        if state and state.is_final() and state.is_completed():
            break
        assert time.monotonic() < deadline, f"retry did not complete: {state}\n{deployed.worker_logs()}"
        time.sleep(1)

    with deployed.client() as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    by_name: dict[str, list[str]] = {}
    for tr in sorted(task_runs, key=lambda t: t.expected_start_time or t.created):
        by_name.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr.state.name if tr.state else "?")
    assert by_name["dump"][-1] == "Cached", by_name
    assert by_name["rootfs-diff"][-1] == "Cached", by_name
    assert "Completed" in by_name["publish"], by_name
    assert len(ArchiveStore(deployed.store, deployed.options).archives("resumer")) == 1

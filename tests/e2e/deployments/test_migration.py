"""The ferry-migrate deployment between two hosts' workers: the move, failures and rollbacks, give-ups."""

from __future__ import annotations

import pytest

from storage.store import ArchiveStore
from tests.e2e.deployments.lab import Deployed, artifacts, children, ever_ran, first_running
from tests.helpers import assert_consecutive_log, wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.server]


def test_migration_moves_the_container_between_hosts(deployed: Deployed) -> None:
    h1, h2 = deployed.host1, deployed.host2
    h1.run_workload("mover")
    counted = h1.counter("mover")

    run = deployed.run("ferry-migrate/host1", container="mover", target_host="host2")

    assert run.state.is_completed(), f"{run.state}\n{deployed.worker_logs()}"
    assert h1.state("mover") == "absent"
    assert h2.state("mover") == "running"
    wait_for(lambda: h2.counter("mover") > counted + 20, what="the migrated container to count on")
    assert assert_consecutive_log(h2.exec("mover", "cat", "/data/log"))[-1] > counted
    assert any(a.key == "migrate-host1-mover" for a in artifacts(deployed, run.id))
    snapshot_runs = [c for c in children(deployed, run.id) if c.name and c.deployment_id]
    assert snapshot_runs, "the migration ran no child deployments"
    # The target's restore ran, ready and waiting, before the source's snapshot started.
    restores = [c for c in snapshot_runs if c.parameters.get("handoff") and "leave_running" not in c.parameters]
    snapshots = [c for c in snapshot_runs if "leave_running" in c.parameters]
    assert len(restores) == len(snapshots) == 1, [(c.name, c.parameters) for c in snapshot_runs]
    assert first_running(deployed, restores[0].id) < first_running(deployed, snapshots[0].id)
    with deployed.client() as client:
        assert not [v.name for v in client.read_variables() if v.name.startswith("ferry-handoff-")]
    kinds = {a.type for c in snapshot_runs for a in artifacts(deployed, c.id)}
    assert "markdown" in kinds and "progress" in kinds
    # Keys and tags name the host: hosts sharing a server keep separate histories.
    keys = {a.key for c in snapshot_runs for a in artifacts(deployed, c.id)}
    assert "snapshot-host1-mover" in keys, keys
    with deployed.client() as client:
        assert "host:host1" in client.read_flow_run(run.id).tags
    assert all(any(t.startswith("host:") for t in c.tags) for c in snapshot_runs), [c.tags for c in snapshot_runs]


@pytest.mark.parametrize(
    ("host", "stages"),
    [
        ("host1", ["publish", "publish", "publish"]),  # the publish task retries twice on its own
        ("host2", ["download", "download", "download"]),
        ("host2", ["verify"]),
        ("host2", ["restore"]),
    ],
    ids=["publish", "download", "verify", "restore"],
)
def test_failed_migration_leaves_the_container_running_on_the_source(
    deployed: Deployed, host: str, stages: list[str]
) -> None:
    h1, h2 = deployed.host1, deployed.host2
    name = f"fail-{stages[0]}"
    h1.run_workload(name)
    deployed.inject(host, *stages)

    run = deployed.run("ferry-migrate/host1", container=name, target_host="host2")

    assert run.state.is_failed(), run.state
    assert "host1" in (run.state.message or "") or "restored" in (run.state.message or "")
    assert h2.state(name) == "absent"
    assert h1.state(name) == "running"
    before = h1.counter(name)
    wait_for(lambda: h1.counter(name) > before + 10, what="the rolled-back container to count on")
    assert_consecutive_log(h1.exec(name, "cat", "/data/log"))
    deployed.inject(host)


def test_migration_cancels_the_snapshot_it_gave_up_on(deployed: Deployed) -> None:
    """The source worker is down: the stop-mode snapshot stays queued past the migration's timeout.
    It is cancelled, and it does not run when the worker comes back: the container keeps running."""
    h1 = deployed.host1
    h1.run_workload("queued")
    deployed.stack.stop_worker("host1")
    try:
        # The migration itself runs on host2's worker; its snapshot waits for host1's.
        run = deployed.run(
            "ferry-migrate/host2", container="queued", source_host="host1", target_host="host2", timeout_minutes=1
        )
    finally:
        deployed.stack.restart_worker("host1")

    assert run.state.is_failed(), run.state
    assert "was cancelled" in (run.state.message or "") and "will not run later" in (run.state.message or "")
    kids = children(deployed, run.id)
    seen = [(c.name, c.parameters, c.state_name, c.start_time, c.infrastructure_pid) for c in kids]
    snapshots = [c for c in kids if "leave_running" in c.parameters]
    restores = [c for c in kids if c.parameters.get("handoff") and "leave_running" not in c.parameters]
    assert len(kids) == 2 and len(snapshots) == len(restores) == 1, f"{seen}\n{deployed.worker_logs()}"
    assert snapshots[0].state.is_cancelled() and not ever_ran(deployed, snapshots[0].id), snapshots[0].state
    # The target's restore, ready and waiting on host2, was called off and restored nothing.
    assert restores[0].state.is_failed() and "called off" in (restores[0].state.message or ""), restores[0].state
    assert deployed.host2.state("queued") == "absent"

    # host1's worker is back and runs what is queued for it: a later run completes, the cancelled one never starts.
    h1.run_workload("after")
    later = deployed.run("ferry-snapshot/host1", container="after", to=deployed.store, leave_running=True)
    assert later.state.is_completed(), f"{later.state}\n{deployed.worker_logs()}"
    with deployed.client() as client:
        again = client.read_flow_run(snapshots[0].id)
    assert again.state.is_cancelled() and not ever_ran(deployed, again.id), again.state
    assert h1.state("queued") == "running"
    before = h1.counter("queued")
    wait_for(lambda: h1.counter("queued") > before + 5, what="the container to keep counting")
    assert ArchiveStore(deployed.store, deployed.options).archives("queued") == []


def test_migration_stops_nothing_while_the_target_worker_is_down(deployed: Deployed) -> None:
    """The target's restore must be ready before the source stops anything: with host2's worker
    down it never is, the migration gives up, and the container never stopped counting on host1."""
    h1 = deployed.host1
    h1.run_workload("stays")
    deployed.stack.stop_worker("host2")
    try:
        run = deployed.run("ferry-migrate/host1", container="stays", target_host="host2", timeout_minutes=1)
    finally:
        deployed.stack.restart_worker("host2")

    assert run.state.is_failed(), run.state
    message = run.state.message or ""
    assert "did not get ready within 60 s" in message and "was not stopped" in message, message
    kids = children(deployed, run.id)
    assert [c.parameters.get("handoff") for c in kids] == [str(run.id)], [c.parameters for c in kids]
    assert kids[0].state.is_cancelled() and not ever_ran(deployed, kids[0].id), kids[0].state
    assert h1.state("stays") == "running"
    assert_consecutive_log(h1.exec("stays", "cat", "/data/log"))
    events = h1.podman("events", "--stream=false", "--format", "{{.Status}} {{.Name}}").stdout
    assert "checkpoint stays" not in events, events
    assert ArchiveStore(deployed.store, deployed.options).archives("stays") == []

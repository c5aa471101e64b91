"""ferry as Prefect users run it: a real `prefect server start`, a process worker per host (two
Podman stores standing for two hosts), deployments from prefect.yaml, a moto S3 store, real CRIU."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from storage.store import ArchiveStore
from tests.helpers import IMAGE, Host, assert_consecutive_log, wait_for
from tests.prefect_stack import Stack, prefect_stack
from tests.servers import S3Server

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.server]


@dataclass
class Deployed:
    stack: Stack
    host1: Host
    host2: Host
    store: str
    options: dict[str, Any]
    faults: dict[str, Path]
    logs: Path

    def run(self, name: str, **params: Any) -> Any:
        with temporary_settings({PREFECT_API_URL: self.stack.api}):
            return run_deployment(name, parameters=params, timeout=900, poll_interval=1)

    def client(self) -> Any:
        return _Client(self.stack.api)

    def inject(self, host: str, *stages: str) -> None:
        self.faults[host].write_text("".join(f"{s}\n" for s in stages))

    def worker_logs(self) -> str:
        return "".join(p.read_text(errors="replace")[-4000:] for p in sorted(self.logs.glob("worker-*.log")))


class _Client:
    def __init__(self, api: str) -> None:
        self._settings = temporary_settings({PREFECT_API_URL: api})

    def __enter__(self) -> Any:
        self._settings.__enter__()
        self._client = get_client(sync_client=True)
        return self._client.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._client.__exit__(*exc)
        self._settings.__exit__(*exc)


@pytest.fixture(scope="module")
def deployed(
    real_criu: None, rootfs_tar: Path, s3: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    base = tmp_path_factory.mktemp("deployed")
    host1 = Host(Path(f"/var/tmp/fth/{os.getpid()}-d1"))
    host2 = Host(Path(f"/var/tmp/fth/{os.getpid()}-d2"))
    bucket = f"ferry-deploy-{uuid.uuid4().hex[:8]}"
    store = f"s3://{bucket}/ferry"
    faults = {h: base / f"faults-{h}" for h in ("host1", "host2")}
    try:  # a failed setup (image import, bucket) leaves no Podman store behind either
        host1.podman("import", str(rootfs_tar), IMAGE)
        host1.podman("save", "-o", str(base / "image.tar"), IMAGE)
        host2.podman("load", "-i", str(base / "image.tar"))
        s3.make_bucket(bucket)
        with prefect_stack(base / "prefect") as stack:
            stack.deploy_host("host1", store)
            stack.deploy_host("host2", store)
            for name, host in (("host1", host1), ("host2", host2)):
                faults[name].write_text("")
                stack.start_worker(
                    name,
                    base / f"worker-{name}.log",
                    PATH=os.environ["PATH"],
                    FERRY_PODMAN=host.env_value,
                    FERRY_STAGING=str(base / f"staging-{name}"),
                    FERRY_FAULTS_FILE=str(faults[name]),
                    FERRY_STORAGE_OPTIONS=json.dumps(s3.options()),
                    FERRY_PROGRESS_MIN_BYTES="0",
                )
            yield Deployed(stack, host1, host2, store, s3.options(), faults, base)
    finally:
        for host in (host1, host2):
            host.cleanup()
            shutil.rmtree(host.base, ignore_errors=True)


def _children(deployed: Deployed, parent_id: Any) -> list[Any]:
    with deployed.client() as client:
        return list(
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
            )
        )


def _artifacts(deployed: Deployed, run_id: Any) -> list[Any]:
    with deployed.client() as client:
        return list(client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))))


def test_deploy_all_registers_typed_deployments_with_a_nightly_schedule(deployed: Deployed) -> None:
    with deployed.client() as client:
        names = {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in client.read_deployments()}
        nightly = client.read_deployment_by_name("ferry-nightly/host1")
        migrate = client.read_deployment_by_name("ferry-migrate/host1")
        restore = client.read_deployment_by_name("ferry-restore/host1")
        source = client.read_deployment_by_name("ferry-source/host1")
    for flow in ("ferry-snapshot", "ferry-restore", "ferry-source", "ferry-migrate", "ferry-nightly"):
        assert {f"{flow}/host1", f"{flow}/host2"} <= names
    assert nightly.schedules and nightly.schedules[0].schedule.cron == "0 2 * * *"
    assert nightly.schedules[0].schedule.timezone == "UTC"
    # The store is the Prefect Variable ferry-store, read at run time, not fixed in the deployments.
    assert "to" not in nightly.parameters and "via" not in migrate.parameters
    assert nightly.parameters["retention"] == {"keep": 10}
    assert "host:host1" in nightly.tags and "host:host1" in migrate.tags
    schema = migrate.parameter_openapi_schema["properties"]
    assert schema["compress"]["enum"] == ["zstd", "gzip", "none"]
    assert "description" in schema["via"] and schema["timeout_minutes"]["minimum"] == 1
    for deployment in (migrate, restore):  # signatures are checked unless the operator says otherwise
        unsigned = deployment.parameter_openapi_schema["properties"]["allow_unsigned"]
        assert unsigned["default"] is False and "keyring" in unsigned["description"]
    assert "Retention" in json.dumps(nightly.parameter_openapi_schema)
    # Two nightly runs never overlap (a new one is cancelled); migrations out of a host queue.
    assert nightly.global_concurrency_limit and nightly.global_concurrency_limit.limit == 1
    assert nightly.concurrency_options and nightly.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert migrate.global_concurrency_limit and migrate.global_concurrency_limit.limit == 1
    assert migrate.concurrency_options and migrate.concurrency_options.collision_strategy == "ENQUEUE"
    assert "ferry-internal" in source.tags and "INTERNAL" in (source.description or "")
    assert "ferry-internal" not in migrate.tags


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
    assert any(a.key == "migrate-host1-mover" for a in _artifacts(deployed, run.id))
    snapshot_runs = [c for c in _children(deployed, run.id) if c.name and c.deployment_id]
    assert snapshot_runs, "the migration ran no child deployments"
    # The target's restore ran, ready and waiting, before the source's snapshot started.
    restores = [c for c in snapshot_runs if c.parameters.get("handoff") and "leave_running" not in c.parameters]
    snapshots = [c for c in snapshot_runs if "leave_running" in c.parameters]
    assert len(restores) == len(snapshots) == 1, [(c.name, c.parameters) for c in snapshot_runs]
    assert _first_running(deployed, restores[0].id) < _first_running(deployed, snapshots[0].id)
    with deployed.client() as client:
        assert not [v.name for v in client.read_variables() if v.name.startswith("ferry-handoff-")]
    kinds = {a.type for c in snapshot_runs for a in _artifacts(deployed, c.id)}
    assert "markdown" in kinds and "progress" in kinds
    # Keys and tags name the host: hosts sharing a server keep separate histories.
    keys = {a.key for c in snapshot_runs for a in _artifacts(deployed, c.id)}
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


def _wait_final(deployed: Deployed, run_id: Any) -> Any:
    deadline = time.monotonic() + 900
    while True:
        with deployed.client() as client:
            run = client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"run {run_id} did not end: {run.state}\n{deployed.worker_logs()}"
        time.sleep(1)


def _ever_ran(deployed: Deployed, run_id: Any) -> bool:
    with deployed.client() as client:
        return any(s.type.value == "RUNNING" for s in client.read_flow_run_states(run_id))


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
    children = _children(deployed, run.id)
    seen = [(c.name, c.parameters, c.state_name, c.start_time, c.infrastructure_pid) for c in children]
    snapshots = [c for c in children if "leave_running" in c.parameters]
    restores = [c for c in children if c.parameters.get("handoff") and "leave_running" not in c.parameters]
    assert len(children) == 2 and len(snapshots) == len(restores) == 1, f"{seen}\n{deployed.worker_logs()}"
    assert snapshots[0].state.is_cancelled() and not _ever_ran(deployed, snapshots[0].id), snapshots[0].state
    # The target's restore, ready and waiting on host2, was called off and restored nothing.
    assert restores[0].state.is_failed() and "called off" in (restores[0].state.message or ""), restores[0].state
    assert deployed.host2.state("queued") == "absent"

    # host1's worker is back and runs what is queued for it: a later run completes, the cancelled one never starts.
    h1.run_workload("after")
    later = deployed.run("ferry-snapshot/host1", container="after", to=deployed.store, leave_running=True)
    assert later.state.is_completed(), f"{later.state}\n{deployed.worker_logs()}"
    with deployed.client() as client:
        again = client.read_flow_run(snapshots[0].id)
    assert again.state.is_cancelled() and not _ever_ran(deployed, again.id), again.state
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
    children = _children(deployed, run.id)
    assert [c.parameters.get("handoff") for c in children] == [str(run.id)], [c.parameters for c in children]
    assert children[0].state.is_cancelled() and not _ever_ran(deployed, children[0].id), children[0].state
    assert h1.state("stays") == "running"
    assert_consecutive_log(h1.exec("stays", "cat", "/data/log"))
    events = h1.podman("events", "--stream=false", "--format", "{{.Status}} {{.Name}}").stdout
    assert "checkpoint stays" not in events, events
    assert ArchiveStore(deployed.store, deployed.options).archives("stays") == []


def _first_running(deployed: Deployed, run_id: Any) -> Any:
    with deployed.client() as client:
        return min(s.timestamp for s in client.read_flow_run_states(run_id) if s.type.value == "RUNNING")


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

    ended = sorted((_wait_final(deployed, r.id) for r in (first, second)), key=lambda r: r.state.name)
    assert [r.state.name for r in ended] == ["Cancelled", "Completed"], [r.state for r in ended]
    assert not _ever_ran(deployed, ended[0].id) and "limit" in (ended[0].state.message or ""), ended[0].state
    assert len(ArchiveStore(deployed.store, deployed.options).archives("overlap")) == 1
    assert h1.state("overlap") == "running"


def _ferry_migrate(deployed: Deployed, *args: str) -> subprocess.CompletedProcess[str]:
    env = deployed.stack.env()
    env.pop("FERRY_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", "migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def test_ferry_migrate_runs_the_deployment_and_follows_it(deployed: Deployed) -> None:
    h1, h2 = deployed.host1, deployed.host2
    h1.run_workload("climover")
    counted = h1.counter("climover")

    proc = _ferry_migrate(deployed, "climover", "--to-host", "host2", "--from-host", "host1", "--json")
    (deployed.logs / "ferry-migrate.txt").write_text(proc.stderr + proc.stdout)  # README's example

    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{deployed.worker_logs()}"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("ferry migrate: started ferry-migrate/host1 run "), proc.stderr
    # Each step's states in the order they came (a short one may pass between two polls).
    steps = [line.split("   ", 1)[1] for line in lines if line.startswith("ferry migrate:   ")]
    assert [s for s in steps if s.endswith(": Completed")] == [
        "ferry-snapshot/host1: Completed",
        "ferry-restore/host2: Completed",
        "ferry-source/host1: Completed",
    ], steps
    assert "ferry migrate: migration: Running" in lines
    assert lines.index("ferry migrate: migration: Running") < lines.index("ferry migrate: migration: Completed")
    done = _valid_json(proc.stdout, "migrate")
    assert done["archive"].startswith(deployed.store + "/climover/"), done
    assert (done["container"], done["from_host"], done["to_host"], done["state"]) == (
        "climover",
        "host1",
        "host2",
        "Completed",
    )
    assert h1.state("climover") == "absent" and h2.state("climover") == "running"
    wait_for(lambda: h2.counter("climover") > counted + 5, what="the migrated container to count on")


def _valid_json(stdout: str, schema_name: str) -> dict[str, Any]:
    from importlib import resources

    import jsonschema

    document: dict[str, Any] = json.loads(stdout)
    schema = json.loads((resources.files("ferry.cli") / "schemas" / f"{schema_name}.json").read_text())
    jsonschema.validate(document, schema)
    return document


def test_ferry_migrate_exits_non_zero_when_the_migration_rolls_back(deployed: Deployed) -> None:
    h1, h2 = deployed.host1, deployed.host2
    h1.run_workload("cliback")
    deployed.inject("host2", "restore")
    try:
        proc = _ferry_migrate(deployed, "cliback", "--to-host", "host2", "--from-host", "host1", "--json")
    finally:
        deployed.inject("host2")
    (deployed.logs / "ferry-migrate-rollback.txt").write_text(proc.stderr + proc.stdout)

    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    error = _valid_json(proc.stdout, "error")["error"]  # --json: the failure as a document on stdout
    assert error["area"] == "migrate" and error["exit_code"] == 1 and "running there again" in error["message"]
    assert "ferry migrate:   ferry-source/host1: Completed" in proc.stderr.splitlines()  # the rollback
    assert "ferry migrate failed (migrate):" in proc.stderr and "running there again" in proc.stderr
    assert "Flow run encountered an exception" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert h2.state("cliback") == "absent" and h1.state("cliback") == "running"


def test_ferry_migrate_interrupted_stops_following_and_the_migration_goes_on(deployed: Deployed) -> None:
    h1, h2 = deployed.host1, deployed.host2
    h1.run_workload("cliint")
    env = deployed.stack.env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry.cli", "migrate", "cliint", "--to-host", "host2", "--from-host", "host1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("ferry migrate: started ferry-migrate/host1 run "), first
    run_id = uuid.UUID(first.rsplit("(", 1)[1].rstrip(")\n"))
    for line in proc.stderr:  # wait until the migration runs, then press Ctrl-C
        if line.strip() == "ferry migrate: migration: Running":
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)

    assert proc.returncode == 130, err
    assert f"the migration goes on in Prefect: `prefect flow-run inspect {run_id}`" in err, err
    assert "Traceback" not in err and out == ""
    final = _wait_final(deployed, run_id)
    assert final.state.is_completed(), final.state
    assert h1.state("cliint") == "absent" and h2.state("cliint") == "running"


def test_ferry_migrate_without_a_prefect_server_or_deployment_says_so(deployed: Deployed) -> None:
    env = deployed.stack.env()
    env.pop("PREFECT_API_URL")
    proc = subprocess.run(
        [sys.executable, "-m", "ferry.cli", "migrate", "x", "--to-host", "host2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2 and "set PREFECT_API_URL" in proc.stderr, proc.stderr
    proc = _ferry_migrate(deployed, "x", "--to-host", "host2", "--from-host", "nohost")
    assert proc.returncode == 2 and "no deployment ferry-migrate/nohost" in proc.stderr, proc.stderr


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


def test_nightly_snapshots_the_others_when_one_fails(deployed: Deployed) -> None:
    h1 = deployed.host1
    h1.run_workload("night1")
    h1.run_workload("night2")

    run = deployed.run("ferry-nightly/host1", containers=["night1", "ghost", "night2"], label=None)

    assert run.state.is_failed(), run.state
    assert "1 of 3" in (run.state.message or "")
    tables = [a for a in _artifacts(deployed, run.id) if a.type == "table"]
    assert tables, "no table artifact"
    rows = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    status = {r["container"]: r["status"] for r in rows}
    assert status == {"night1": "ok", "ghost": "FAILED", "night2": "ok"}
    store = ArchiveStore(deployed.store, deployed.options)
    assert store.archives("night1") and store.archives("night2")
    assert h1.state("night1") == "running" and h1.state("night2") == "running"


def test_prefect_ui_shows_the_run_and_the_deployment(deployed: Deployed, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    deployed.host1.run_workload("ui-shown")
    run = deployed.run("ferry-snapshot/host1", container="ui-shown", to=deployed.store, leave_running=True)
    assert run.state.is_completed(), run.state
    with deployed.client() as client:
        deployment = client.read_deployment_by_name("ferry-snapshot/host1")

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True, args=args
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{deployed.stack.ui}/runs/flow-run/{run.id}", wait_until="networkidle")
        page.get_by_text(run.name).first.wait_for(timeout=60_000)
        page.get_by_text("Completed").first.wait_for(timeout=60_000)
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("Snapshot of ui-shown").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "flow-run.png"))
        page.goto(f"{deployed.stack.ui}/deployments/deployment/{deployment.id}", wait_until="networkidle")
        page.get_by_text("ferry-snapshot").first.wait_for(timeout=60_000)
        page.get_by_text("host1").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "deployment.png"))
        browser.close()
    shutil.copy(tmp_path / "flow-run.png", deployed.logs / "flow-run.png")
    shutil.copy(tmp_path / "deployment.png", deployed.logs / "deployment.png")

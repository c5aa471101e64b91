"""Every flow, wired end to end against the fake runtime (tests/fakes.py): real Prefect (the test
harness), ferry's real archive stages and a real local store; only Podman and CRIU are faked."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferry.errors import ContainerNotFoundError, FerryError
from ferry.faults import ENV as FAULTS
from ferry.runtime import Changes, installed
from flows import migrate as migrate_module
from flows.migrate import MigrationFailed, migrate
from flows.nightly import NightlyFailed, Retention, nightly
from flows.restore import restore
from flows.snapshot import snapshot
from flows.source import source
from storage.store import ArchiveStore
from tests.fakes import IMAGE_ID, FakeRuntime

pytestmark = pytest.mark.usefixtures("prefect_harness", "staging")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRuntime]:
    rt = FakeRuntime(tmp_path / "fake")
    rt.add("app", files={"/data": None, "/data/new": b"added"}, changes=Changes(added=("/data/new",)))
    with installed(rt):
        yield rt


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"file://{tmp_path}/store"


def test_snapshot_stop_mode_then_restore(fake: FakeRuntime, store: str) -> None:
    result = snapshot("app", store)
    assert result.url.startswith(store + "/app/") and result.mode == "stop"
    assert fake.containers["app"].state == "exited"
    names = fake.names()
    assert names[0] == "inspect"
    assert names.index("freeze") < names.index("diff") < names.index("checkpoint") < names.index("thaw")
    assert [e.url for e in ArchiveStore(store).archives("app")] == [result.url]

    restored = restore(result.url, name="copy")
    assert (restored.name, restored.state) == ("copy", "running")
    assert fake.containers["copy"].state == "running"


def test_an_archive_without_a_sidecar_is_restored_in_two_passes(fake: FakeRuntime, store: str) -> None:
    """No sidecar (a Podman export, say): download, verify, then prepare import from the local copy."""
    url = snapshot("app", store, leave_running=True).url
    Path(url.removeprefix("file://") + ".ferry.json").unlink()
    restored = restore(url, name="copy", allow_unverified=True, allow_unsigned=True)
    assert (restored.name, restored.state) == ("copy", "running")
    assert fake.called("image_mounted")


def test_snapshot_leave_running_with_image_then_restore_latest_on_a_host_without_it(
    fake: FakeRuntime, store: str
) -> None:
    result = snapshot("app", store, leave_running=True, with_image=True)
    assert result.mode == "leave-running" and IMAGE_ID in result.image_url
    assert fake.containers["app"].state == "running"
    del fake.images[IMAGE_ID]  # as on a fresh host

    restored = restore(store, latest="app", name="copy")
    assert restored.state == "running"
    assert fake.called("load_image") and fake.images[IMAGE_ID] == "img"


def test_snapshot_failing_after_the_dump_rolls_back(
    fake: FakeRuntime, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = tmp_path / "faults"
    faults.write_text("archive\narchive\n")  # the streamed archive, then its rebuild from dump.tar
    monkeypatch.setenv(FAULTS, str(faults))
    with pytest.raises(FerryError, match="Injected fault in stage 'archive'"):
        snapshot("app", store)
    assert fake.called("restore_local"), "the stopped container was not restored"
    assert fake.containers["app"].state == "running"
    assert ArchiveStore(store).archives("app") == []
    assert ArchiveStore(store).incomplete() == []


def test_snapshot_whose_streamed_archive_fails_is_rebuilt_from_the_dump_copy(
    fake: FakeRuntime, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = tmp_path / "faults"
    faults.write_text("archive\n")
    monkeypatch.setenv(FAULTS, str(faults))
    result = snapshot("app", store)
    assert [e.url for e in ArchiveStore(store).archives("app")] == [result.url]
    assert len(fake.called("checkpoint")) == 1 and not fake.called("restore_local")
    assert ArchiveStore(store).incomplete() == []


def test_snapshot_of_a_missing_container_touches_nothing(fake: FakeRuntime, store: str) -> None:
    with pytest.raises(ContainerNotFoundError):
        snapshot("nope", store)
    assert fake.names() == ["inspect"]


def test_nightly_snapshots_each_and_prunes(fake: FakeRuntime, store: str) -> None:
    fake.add("web", labels={"ferry.backup": "nightly"})
    fake.add("other")
    rows = nightly(store, containers=["app"], label="ferry.backup=nightly")
    assert [(r["container"], r["status"]) for r in rows] == [("app", "ok"), ("web", "ok")]
    nightly(store, containers=["app", "web"])
    rows = nightly(store, containers=["app", "web"], retention=Retention(keep=1))
    assert [r["pruned"] for r in rows] == [2, 2]
    assert len(ArchiveStore(store).archives("app")) == 1
    assert all(c.state == "running" for c in fake.containers.values())
    assert ArchiveStore(store).archives("other") == []


def test_nightly_goes_on_after_a_failure(fake: FakeRuntime, store: str) -> None:
    with pytest.raises(NightlyFailed, match="1 of 2 snapshots failed: nope"):
        nightly(store, containers=["nope", "app"])
    assert len(ArchiveStore(store).archives("app")) == 1


def test_source_rollback_and_remove(fake: FakeRuntime, store: str) -> None:
    snapshot("app", store)
    assert source("app", "rollback") == "running"
    assert source("app", "remove") == "removed"
    assert "app" not in fake.containers


class _Run:
    def __init__(self, state: Any) -> None:
        self.state = state
        self.id = state.state_details.flow_run_id


class _Started:
    """A deployment run started without waiting (the target's restore): a subflow in a thread."""

    def __init__(self, flow: Any, parameters: dict[str, Any]) -> None:
        from prefect.states import Running

        self.id = uuid.uuid4()
        self.state: Any = Running()
        self.thread = threading.Thread(target=self._run, args=(flow, parameters), daemon=True)
        self.thread.start()

    def _run(self, flow: Any, parameters: dict[str, Any]) -> None:
        self.state = flow(**parameters, return_state=True)


def _deployments(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each host's deployment runs here, as a subflow: one host, so the same fake runtime."""
    ran: list[str] = []
    flows: dict[str, Any] = {"ferry-snapshot": snapshot, "ferry-restore": restore, "ferry-source": source}

    def run(name: str, parameters: dict[str, Any], timeout_s: float) -> _Run:
        ran.append(name)
        return _Run(flows[name.split("/", maxsplit=1)[0]](**parameters, return_state=True))

    def start(name: str, parameters: dict[str, Any]) -> _Started:
        ran.append(name)
        return _Started(flows[name.split("/", maxsplit=1)[0]], parameters)

    def wait(run: _Started, timeout_s: float, poll_s: float = 1.0, until: Any = None) -> _Started:
        deadline = time.monotonic() + 60
        while run.thread.is_alive() and not (until is not None and until()):
            assert time.monotonic() < deadline, "the started run neither ended nor got ready"
            time.sleep(0.05)
        return run

    monkeypatch.setattr(migrate_module, "run_child", run)
    monkeypatch.setattr(migrate_module, "start_child", start)
    monkeypatch.setattr(migrate_module, "wait_child", wait)
    return ran


def test_migrate(fake: FakeRuntime, store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = _deployments(monkeypatch)
    out = migrate("app", "a", "b", store, new_name="moved", tcp_established=False, tcp_close=True)
    assert ran == ["ferry-restore/b", "ferry-snapshot/a", "ferry-source/a"]
    assert out["archive"].startswith(store + "/app/")
    assert "app" not in fake.containers and fake.containers["moved"].state == "running"


def test_migrate_rolls_back_when_the_restore_fails(
    fake: FakeRuntime, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = tmp_path / "faults"
    faults.write_text("restore\n")
    monkeypatch.setenv(FAULTS, str(faults))
    ran = _deployments(monkeypatch)
    with pytest.raises(MigrationFailed, match="restored on a from its local checkpoint"):
        migrate("app", "a", "b", store, new_name="moved", tcp_established=False, tcp_close=True)
    assert ran == ["ferry-restore/b", "ferry-snapshot/a", "ferry-source/a"]
    assert fake.containers["app"].state == "running" and "moved" not in fake.containers


def test_migrate_under_a_new_name_keeping_connections_is_refused_before_anything_runs(
    fake: FakeRuntime, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _deployments(monkeypatch)
    with pytest.raises(FerryError, match="cannot restore established TCP connections under a new name"):
        migrate("app", "a", "b", store, new_name="moved")
    assert ran == [] and fake.containers["app"].state == "running"


def test_migrate_stops_nothing_when_the_target_cannot_get_ready(
    fake: FakeRuntime, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add("moved", files={"/data": None})  # the name is taken on the target
    ran = _deployments(monkeypatch)
    with pytest.raises(MigrationFailed, match="could not get ready .*already exists.* still runs on a"):
        migrate("app", "a", "b", store, new_name="moved", tcp_established=False, tcp_close=True)
    assert ran == ["ferry-restore/b"]  # no snapshot: nothing was stopped
    assert fake.containers["app"].state == "running"
    assert ArchiveStore(store).archives("app") == []


# "publish" (each try of it): after the dump announced the archive (COMING), never published
@pytest.mark.parametrize("fault", ["dump", "publish\npublish\npublish"], ids=["dump", "publish"])
def test_migrate_calls_the_waiting_target_off_when_the_snapshot_fails(
    fake: FakeRuntime, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    from prefect.client.orchestration import get_client

    faults = tmp_path / "faults"
    faults.write_text(f"{fault}\n")
    monkeypatch.setenv(FAULTS, str(faults))
    ran = _deployments(monkeypatch)
    targets: list[Any] = []
    start = migrate_module.start_child
    monkeypatch.setattr(migrate_module, "start_child", lambda *a: targets.append(start(*a)) or targets[-1])
    with pytest.raises(MigrationFailed, match="snapshot of 'app' on a failed"):
        migrate("app", "a", "b", store, new_name="moved", tcp_established=False, tcp_close=True, timeout_minutes=1)
    assert ran == ["ferry-restore/b", "ferry-snapshot/a"]
    assert targets[0].state.is_failed() and "called off" in (targets[0].state.message or "")
    assert fake.containers["app"].state == "running" and "moved" not in fake.containers
    with get_client(sync_client=True) as client:
        assert not [v for v in client.read_variables() if v.name.startswith("ferry-handoff-")]  # withdrawn


def test_the_store_defaults_to_the_prefect_variable_and_a_parameter_still_wins(
    fake: FakeRuntime, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.variables import Variable

    monkeypatch.delenv("FERRY_STORE", raising=False)
    with pytest.raises(FerryError, match="set the Prefect Variable ferry-store"):
        snapshot("app", leave_running=True)
    monkeypatch.setenv("FERRY_STORE", f"file://{tmp_path}/from-env")
    assert snapshot("app", leave_running=True).url.startswith(f"file://{tmp_path}/from-env/app/")
    Variable.set("ferry-store", store, overwrite=True)
    try:
        first = snapshot("app", leave_running=True)  # the Variable, read when the run starts
        assert first.url.startswith(store + "/app/")
        rows = nightly(containers=["app"])
        assert rows[0]["archive"].startswith(store + "/app/")
        other = f"file://{tmp_path}/other"
        assert snapshot("app", other, leave_running=True).url.startswith(other + "/app/")
        restored = restore(latest="app", name="copy")
        assert restored.name == "copy"
    finally:
        Variable.unset("ferry-store")
    with pytest.raises(FerryError, match="Name the archive"):
        restore()


def test_migrate_fails_without_rolling_back_when_the_removal_on_the_source_fails(
    fake: FakeRuntime, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.states import Failed

    ran = _deployments(monkeypatch)
    real = migrate_module.run_child

    def removal_fails(name: str, parameters: dict[str, Any], timeout_s: float) -> Any:
        if parameters.get("action") == "remove":
            ran.append(name)
            return _Run(Failed(message="podman rm: device busy"))
        return real(name, parameters, timeout_s)

    monkeypatch.setattr(migrate_module, "run_child", removal_fails)
    with pytest.raises(MigrationFailed, match="runs on b now .* removing its stopped copy on a failed") as info:
        migrate("app", "a", "b", store, new_name="moved", tcp_established=False, tcp_close=True)
    assert "podman rm app" in str(info.value) and "device busy" in str(info.value)
    assert ran == ["ferry-restore/b", "ferry-snapshot/a", "ferry-source/a"]  # no rollback after it
    assert fake.containers["moved"].state == "running"


def test_every_flow_has_a_timeout_and_the_nightly_one_ends_before_the_next_night() -> None:
    flows = {f.name: f.timeout_seconds for f in (snapshot, restore, source, migrate, nightly)}
    assert flows == {
        "ferry-snapshot": 6 * 3600,
        "ferry-restore": 6 * 3600,
        "ferry-source": 3600,
        "ferry-migrate": 24 * 3600,
        "ferry-nightly": 20 * 3600,
    }


def test_a_store_failure_mid_stream_is_retried_from_the_start(
    fake: FakeRuntime, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receive stage streams from the store: a read that fails part way fails the task, which
    Prefect runs again from the start (a fresh stream, the partial tar removed); the restore succeeds."""
    from fsspec.implementations.local import LocalFileOpener

    import tasks.receive

    url = snapshot("app", store, leave_running=True).url
    original, reads, opened = LocalFileOpener.read, [], []

    def cut(self: LocalFileOpener, *args: int) -> bytes:
        reads.append(self.path)
        if len(reads) == 3:
            raise ConnectionResetError("connection reset by peer")
        return original(self, *args)  # type: ignore[no-any-return]

    real_stream = tasks.receive.stream_archive

    def counted(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[0])
        return real_stream(*args, **kwargs)

    monkeypatch.setattr(LocalFileOpener, "read", cut)
    monkeypatch.setattr(tasks.receive, "stream_archive", counted)
    monkeypatch.setattr(tasks.receive.receive_task, "retry_delay_seconds", [0, 0])
    restored = restore(url, name="copy")
    assert (restored.name, restored.state) == ("copy", "running")
    assert opened == [url, url], "the receive stage was not retried from a fresh stream"
    assert len(reads) > 3

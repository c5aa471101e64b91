"""Every task's plain function against the fake runtime (tests/fakes.py) and a real local store.

What Podman and CRIU do is faked; ferry's own logic (ordering, refusals, state checks, the
archive, the store) runs for real. The e2e tests prove the same stages on real Podman and CRIU."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from ferry.errors import (
    ArchiveNotFoundError,
    ContainerNotFoundError,
    ContainerStateError,
    IntegrityError,
    RestoreError,
    RuntimeCommandError,
    StoreError,
    UnsafeArchiveError,
    UsageError,
)
from ferry.resume import is_inflight
from ferry.runtime import Changes, Mount
from storage.images import find_image
from storage.ref import StoreRef, store_of
from storage.store import ArchiveStore
from tasks.archive import ArchiveResult, build_archive
from tasks.download import Fetched, download
from tasks.dump import dump
from tasks.freeze import frozen
from tasks.inspect import Subject, inspect
from tasks.load_image import load_image
from tasks.locate import archive_of_run, locate
from tasks.prepare_import import prepare_import
from tasks.prune import prune
from tasks.publish import discard, publish
from tasks.receive import receive
from tasks.restore import restore
from tasks.retry import transient
from tasks.rollback import rollback
from tasks.rootfs_diff import rootfs_diff
from tasks.select import select
from tasks.ship_image import ship_image
from tasks.sidecar import read_announced
from tasks.source import remove_here, restore_here
from tasks.verify import Verified, verify
from tests.fakes import IMAGE_ID, FakeRuntime

pytestmark = pytest.mark.usefixtures("staging")


def _archive(fake: FakeRuntime, ref: StoreRef, work: Path, *, leave_running: bool = False) -> ArchiveResult:
    subject = inspect("app", ref, runtime=fake)
    diff = rootfs_diff(subject.info, work, runtime=fake)
    dumped = dump(subject.info, work, leave_running, runtime=fake)
    return build_archive(subject, dumped, diff, "zstd", ref)


def _snapshot(fake: FakeRuntime, ref: StoreRef, work: Path) -> str:
    return publish(_archive(fake, ref, work, leave_running=True), ref)


def _verified(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> Verified:
    url = _snapshot(fake, ref, work)
    fetch_dir = tmp_path / "fetch"
    fetch_dir.mkdir()
    return verify(download(url, fetch_dir, ref.at(store_of(url))))


# -- snapshot side ------------------------------------------------------------------------------


def test_inspect_checks_the_store_and_reads_the_source(fake: FakeRuntime, ref: StoreRef) -> None:
    subject = inspect("app", ref, runtime=fake)
    assert subject.info.name == "app" and subject.source.host == "fake-host"
    assert fake.names() == ["inspect", "source"]
    assert Path(ref.url.removeprefix("file://")).is_dir()  # the writability probe made the store


def test_inspect_refuses_bind_mounts_unless_allowed(fake: FakeRuntime, ref: StoreRef) -> None:
    fake.containers["app"].mounts = (Mount("bind", "/srv", "/data"),)
    with pytest.raises(ContainerStateError, match="bind-mounts host paths"):
        inspect("app", ref, runtime=fake)
    assert inspect("app", ref, runtime=fake, allow_bind_mounts=True).info.bind_mounts


def test_inspect_of_a_missing_container(fake: FakeRuntime, ref: StoreRef) -> None:
    with pytest.raises(ContainerNotFoundError):
        inspect("nope", ref, runtime=fake)


def test_inspect_brings_back_a_container_left_stopped_by_an_interrupted_run(
    fake: FakeRuntime, ref: StoreRef, work: Path
) -> None:
    info = fake.inspect("app")
    dump(info, work, False, runtime=fake)  # stop mode: marked in flight, container exited
    assert is_inflight(info.id) and fake.containers["app"].state == "exited"
    subject = inspect("app", ref, runtime=fake)
    assert subject.info.state == "running"
    assert fake.called("restore_local") == [(info.id,)]
    assert not is_inflight(info.id)


def test_inspect_fails_on_an_unwritable_store(fake: FakeRuntime, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        inspect("app", StoreRef(f"file://{blocker}/store"), runtime=fake)


def test_frozen_freezes_and_always_thaws(fake: FakeRuntime) -> None:
    info = fake.inspect("app")
    with pytest.raises(RuntimeError), frozen(info, runtime=fake) as knob:
        assert knob is not None and info.id in fake.frozen
        raise RuntimeError("boom")
    assert not fake.frozen
    with frozen(info, skip=True, runtime=fake) as knob:
        assert knob is None
    assert fake.names().count("freeze") == 1


def test_frozen_refuses_a_container_that_stopped(fake: FakeRuntime) -> None:
    info = fake.inspect("app")
    fake.containers["app"].state = "exited"
    with pytest.raises(ContainerStateError), frozen(info, runtime=fake):
        pass


def test_rootfs_diff_takes_added_and_changed_files_not_directories(fake: FakeRuntime, work: Path) -> None:
    result = rootfs_diff(fake.inspect("app"), work, runtime=fake)
    assert result.files == 2 and result.deleted_count == 1
    assert result.tar is not None
    with tarfile.open(result.tar) as tar:
        assert sorted(tar.getnames()) == ["data/new", "etc/conf"]
    assert result.deleted is not None and "/etc/gone" in result.deleted.read_text()


def test_rootfs_diff_without_changes(fake: FakeRuntime, work: Path) -> None:
    fake.containers["app"].changes = Changes()
    result = rootfs_diff(fake.inspect("app"), work, runtime=fake)
    assert (result.tar, result.deleted, result.files) == (None, None, 0)


def test_dump_stop_mode_marks_the_container_in_flight(fake: FakeRuntime, work: Path) -> None:
    info = fake.inspect("app")
    result = dump(info, work, False, runtime=fake)
    assert result.export == work / "dump.tar" and result.export.exists()
    assert result.stats.frozen_us == 1500 and not result.leave_running
    assert is_inflight(info.id)
    [(name, _, leave_running, _)] = fake.called("checkpoint")
    assert (name, leave_running) == ("app", False)


def test_dump_leave_running(fake: FakeRuntime, work: Path) -> None:
    info = fake.inspect("app")
    dump(info, work, True, runtime=fake)
    assert not is_inflight(info.id) and fake.containers["app"].state == "running"


def test_archive_streams_into_the_store_unpublished(fake: FakeRuntime, ref: StoreRef, work: Path) -> None:
    archive = _archive(fake, ref, work)
    assert archive.path is None and archive.key.startswith("app/")
    assert ArchiveStore(ref.url).archives("app") == []  # no sidecar yet: invisible
    names = [m.name for m in archive.manifest.members]
    assert "rootfs-diff.tar" in names and "config.dump" in names


def test_archive_without_a_store_goes_to_staging(fake: FakeRuntime, ref: StoreRef, work: Path) -> None:
    subject = inspect("app", ref, runtime=fake)
    diff = rootfs_diff(subject.info, work, runtime=fake)
    archive = build_archive(subject, dump(subject.info, work, True, runtime=fake), diff, "gzip")
    assert archive.path is not None and archive.path.exists() and archive.key == ""


def test_upload_publishes_and_discard_removes_an_unpublished_archive(
    fake: FakeRuntime, ref: StoreRef, work: Path
) -> None:
    archive = _archive(fake, ref, work)
    url = publish(archive, ref)
    [entry] = ArchiveStore(ref.url).archives("app")
    assert entry.url == url and entry.sidecar.signature
    other = _archive(fake, ref, work / ".." / "work")
    object_path = Path(ref.url.removeprefix("file://")) / other.key
    assert object_path.exists()
    discard(other, ref)
    assert not object_path.exists()
    discard(other, ref)  # already gone: fine


def test_discard_reports_a_failure_instead_of_raising(
    fake: FakeRuntime, ref: StoreRef, work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive = _archive(fake, ref, work)
    blocker = Path(ref.url.removeprefix("file://")) / archive.key
    blocker.unlink()
    (blocker / "in-the-way").mkdir(parents=True)  # a directory cannot be removed as the object
    with caplog.at_level(logging.WARNING, logger="ferry"):
        discard(archive, ref)
    assert "Could not remove the unpublished archive" in caplog.text


def test_ship_image_once_per_image(fake: FakeRuntime, ref: StoreRef, work: Path) -> None:
    subject = inspect("app", ref, runtime=fake)
    url = ship_image(subject, ref, work, runtime=fake)
    assert IMAGE_ID in url and find_image(ref.open(), IMAGE_ID) is not None
    assert ship_image(subject, ref, work, runtime=fake) == url
    assert len(fake.called("save_image")) == 1


def test_select_names_and_label(fake: FakeRuntime) -> None:
    fake.add("web", labels={"ferry.backup": "yes"})
    assert select(["app"], None, runtime=fake) == ["app"]
    assert select(["app"], "ferry.backup", runtime=fake) == ["app", "web"]
    assert fake.called("running_containers") == [("ferry.backup",)]
    with pytest.raises(UsageError):
        select([], None, runtime=fake)


def test_rollback_restores_a_stopped_container(fake: FakeRuntime, work: Path) -> None:
    info = fake.inspect("app")
    dump(info, work, False, runtime=fake)
    failure = StoreError("upload failed")
    rollback(info, failure, work, runtime=fake)
    assert fake.containers["app"].state == "running" and not is_inflight(info.id)
    assert any("restored on this host" in note for note in failure.__notes__)


def test_rollback_of_a_running_container_does_nothing(fake: FakeRuntime) -> None:
    rollback(fake.inspect("app"), StoreError("x"), runtime=fake)
    assert fake.called("restore_local") == []


def test_rollback_that_fails_says_how_to_recover(fake: FakeRuntime, work: Path) -> None:
    info = fake.inspect("app")
    dump(info, work, False, runtime=fake)
    fake.fail["restore_local"] = RuntimeCommandError("criu failed")
    with pytest.raises(RestoreError, match="podman container restore --keep app"):
        rollback(info, StoreError("x"), work, runtime=fake)


def test_source_restore_here_and_remove_here(fake: FakeRuntime, work: Path) -> None:
    dump(fake.inspect("app"), work, False, runtime=fake)
    assert restore_here("app", runtime=fake) == "running"
    assert restore_here("app", runtime=fake) == "running"  # already running: nothing to do
    assert len(fake.called("restore_local")) == 1
    remove_here("app", runtime=fake)
    assert "app" not in fake.containers
    remove_here("app", runtime=fake)  # gone already: fine


def test_retry_condition() -> None:
    def state(exc: BaseException | None) -> SimpleNamespace:
        def result() -> None:
            if exc is not None:
                raise exc

        return SimpleNamespace(result=result)

    assert transient(None, None, state(StoreError("flaky")))
    assert not transient(None, None, state(ArchiveNotFoundError("gone")))
    assert not transient(None, None, state(UsageError("bad")))
    assert not transient(None, None, state(ValueError("bug")))
    assert not transient(None, None, state(None))


# -- store queries ------------------------------------------------------------------------------


def test_locate_and_archive_of_run(fake: FakeRuntime, ref: StoreRef, work: Path) -> None:
    with pytest.raises(ArchiveNotFoundError, match="no complete snapshot"):
        locate(ref, "app")
    url = _snapshot(fake, ref, work)
    assert locate(ref, "app") == url
    with pytest.raises(ArchiveNotFoundError, match="left no complete archive"):
        archive_of_run(ref, "app", "some-run-id")
    manifest_run = ArchiveStore(ref.url).archives("app")[0].sidecar.manifest.run
    assert archive_of_run(ref, "app", manifest_run) == url


def test_prune_keeps_the_newest(fake: FakeRuntime, ref: StoreRef, work: Path) -> None:
    urls = [_snapshot(fake, ref, work) for _ in range(3)]
    deleted = prune(ref, ["app"], keep=1, older_than_days=None)
    assert sorted(deleted) == sorted(urls[:2])
    assert [e.url for e in ArchiveStore(ref.url).archives("app")] == [urls[2]]


# -- restore side -------------------------------------------------------------------------------


def test_download_and_verify(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> None:
    verified = _verified(fake, ref, work, tmp_path)
    assert isinstance(verified.fetched, Fetched) and verified.fetched.sidecar is not None
    assert verified.report.name == "app" and verified.report.image_id == IMAGE_ID


def test_verify_refuses_a_tampered_archive(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> None:
    url = _snapshot(fake, ref, work)
    fetch_dir = tmp_path / "fetch"
    fetch_dir.mkdir()
    fetched = download(url, fetch_dir, ref)
    data = bytearray(fetched.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    fetched.path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        verify(fetched)


def test_download_of_a_missing_archive(ref: StoreRef, tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFoundError):
        download(f"{ref.url}/app/none.tar.zst", tmp_path, ref)


def test_load_image_present_or_from_the_store(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> None:
    wanted = (IMAGE_ID, "img", tmp_path)
    assert load_image(*wanted, ref, runtime=fake) == "present"
    del fake.images[IMAGE_ID]
    with pytest.raises(RestoreError, match="neither on this host nor in the store"):
        load_image(*wanted, ref, runtime=fake)
    fake.images[IMAGE_ID] = "img"
    ship_image(Subject(fake.inspect("app"), fake.source()), ref, work, runtime=fake)
    del fake.images[IMAGE_ID]
    assert IMAGE_ID in load_image(*wanted, ref, runtime=fake)
    assert fake.images[IMAGE_ID] == "img" and fake.called("tag_image") == [(IMAGE_ID, "img")]


def test_prepare_import_and_restore(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> None:
    verified = _verified(fake, ref, work, tmp_path)
    with pytest.raises(ContainerStateError, match="already exists"):
        prepare_import(verified, runtime=fake)  # "app" is still there
    prepared = prepare_import(verified, "copy", runtime=fake)
    with tarfile.open(prepared.path) as tar:
        names = tar.getnames()
    assert "config.dump" in names and "rootfs-diff.tar" in names
    assert fake.called("reference_spec") and fake.called("store_info")
    restored = restore(prepared, runtime=fake)
    assert (restored.name, restored.state) == ("copy", "running")
    [(_, name, _, _, target)] = fake.called("restore_import")
    assert (name, target) == ("copy", "copy")


def test_prepare_import_refuses_a_missing_image(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> None:
    verified = _verified(fake, ref, work, tmp_path)
    del fake.images[IMAGE_ID]
    with pytest.raises(RestoreError, match="is not on this host"):
        prepare_import(verified, "copy", runtime=fake)


def test_restore_failure_is_reported(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> None:
    prepared = prepare_import(_verified(fake, ref, work, tmp_path), "copy", runtime=fake)
    fake.fail["restore_import"] = RestoreError("Cannot restore container 'copy'.")
    with pytest.raises(RestoreError):
        restore(prepared, runtime=fake)
    assert "copy" not in fake.containers


# -- the one-pass restore: sidecar, then receive --------------------------------------------------


def _staged(tmp_path: Path) -> Path:
    staging = tmp_path / "run"
    staging.mkdir()
    return staging


def test_receive_writes_the_import_in_one_pass(fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path) -> None:
    url = _snapshot(fake, ref, work)
    announced = read_announced(url, ref)
    assert announced.claims is not None and announced.claims.image_id == IMAGE_ID and announced.claims.name == "app"
    staging = _staged(tmp_path)
    with pytest.raises(ContainerStateError, match="already exists"):
        receive(announced, staging, ref, runtime=fake)  # "app" is still there
    prepared = receive(announced, staging, ref, "copy", runtime=fake)
    assert sorted(p.name for p in staging.iterdir()) == ["podman-import.tar"]  # no copy of the archive
    with tarfile.open(prepared.path) as tar:
        names = tar.getnames()
    assert "config.dump" in names and "rootfs-diff.tar" in names
    assert prepared.report.name == "app" and prepared.report.image_id == IMAGE_ID
    assert fake.called("image_mounted") == [(IMAGE_ID,)]
    restored = restore(prepared, runtime=fake)
    assert (restored.name, restored.state) == ("copy", "running")


def test_receive_of_a_tampered_archive_leaves_nothing(
    fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path
) -> None:
    url = _snapshot(fake, ref, work)
    stored = Path(url.removeprefix("file://"))
    data = bytearray(stored.read_bytes())
    data[-40] ^= 0xFF  # near the end: most of the rewrite is written before the damage shows
    stored.write_bytes(bytes(data))
    staging = _staged(tmp_path)
    with pytest.raises(IntegrityError):
        receive(read_announced(url, ref), staging, ref, "copy", runtime=fake)
    assert list(staging.iterdir()) == []


def test_receive_refuses_a_manifest_config_dump_contradicts(
    fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path
) -> None:
    """The claims are checked at the end: a consistent archive whose manifest names another
    image than its config.dump is refused after the whole walk, and nothing is left for Podman."""
    from dataclasses import replace

    url = _snapshot(fake, ref, work)
    announced = read_announced(url, ref)
    assert announced.claims is not None
    other = "e" * 64
    fake.images[other] = "other"
    lying = replace(announced, claims=replace(announced.claims, image_id=other))
    staging = _staged(tmp_path)
    with pytest.raises(UnsafeArchiveError, match="config.dump disagrees with its manifest: image id"):
        receive(lying, staging, ref, "copy", runtime=fake)
    assert list(staging.iterdir()) == []
    assert fake.called("image_mounted") == [(other,)]


def test_receive_retries_from_the_start_after_a_store_failure(
    fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _snapshot(fake, ref, work)
    staging = _staged(tmp_path)
    reads = 0

    from fsspec.implementations.local import LocalFileOpener

    original = LocalFileOpener.read

    def cut(self: LocalFileOpener, *args: int) -> bytes:  # the store's file: the connection drops mid-stream
        nonlocal reads
        reads += 1
        if reads == 3:
            raise ConnectionResetError("connection reset by peer")
        return original(self, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(LocalFileOpener, "read", cut)
    announced = read_announced(url, ref)
    with pytest.raises(StoreError, match="Cannot read") as info:
        receive(announced, staging, ref, "copy", runtime=fake)
    assert type(info.value) is StoreError  # transient: the task retries it from the start
    assert list(staging.iterdir()) == []
    prepared = receive(announced, staging, ref, "copy", runtime=fake)
    assert sorted(p.name for p in staging.iterdir()) == [prepared.path.name]


def test_the_last_check_failing_leaves_podman_nothing(
    fake: FakeRuntime, ref: StoreRef, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.faults import ENV as FAULTS

    url = _snapshot(fake, ref, work)
    faults = tmp_path / "faults"
    faults.write_text("verify\n")
    monkeypatch.setenv(FAULTS, str(faults))
    staging = _staged(tmp_path)
    with pytest.raises(IntegrityError, match="Injected fault in stage 'verify'"):
        receive(read_announced(url, ref), staging, ref, "copy", runtime=fake)
    assert list(staging.iterdir()) == []
    assert not fake.called("restore_import")


def test_a_sidecar_without_an_image_id_goes_the_two_pass_way(ref: StoreRef, tmp_path: Path) -> None:
    from ferry.archive.claims import Claims
    from ferry.archive.manifest import ContainerRef, Manifest, Source

    manifest = Manifest(ContainerRef("app", "a" * 64), Source(), "stop", "2026-11-28T00:00:00Z")
    assert Claims.of(manifest) is None
    for bad in (
        ContainerRef("--rm", "a" * 64, IMAGE_ID),
        ContainerRef("app", "a" * 64, "--all"),
        ContainerRef("app", "a" * 64, IMAGE_ID, "-q"),
    ):
        with pytest.raises(UnsafeArchiveError, match="manifest holds an invalid"):
            Claims.of(Manifest(bad, Source(), "stop", "2026-11-28T00:00:00Z"))

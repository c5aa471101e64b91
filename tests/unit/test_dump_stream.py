"""The dump stage against the fake runtime: Podman's export archived while Podman writes it, the
rootfs diff compressed while CRIU dumps (stop mode), the thaw, and every way it can fail.

The e2e tests run the same stage on real Podman and CRIU (tests/e2e/test_snapshot_stream.py and
every snapshot there)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from ferry.archive.members import MANIFEST
from ferry.errors import CheckpointError, StoreError
from storage.ref import StoreRef
from storage.store import ArchiveStore
from tasks import archive_stream
from tasks.archive import build_archive
from tasks.dump import ArchiveJob, dump
from tasks.inspect import Subject, inspect
from tasks.rootfs_diff import DiffResult, rootfs_diff
from tests.fakes import FakeRuntime

pytestmark = pytest.mark.usefixtures("staging")

PODMAN_MEMBERS = ["checkpoint/inventory.img", "checkpoint/pages-1.img", "config.dump", "spec.dump"]


def _nothing_stored(ref: StoreRef) -> bool:
    return ArchiveStore(ref.url).incomplete() == [] and not list(Path(ref.url.removeprefix("file://")).rglob("*.zst*"))


def _job(fake: FakeRuntime, ref: StoreRef, work: Path) -> tuple[Subject, ArchiveJob]:
    subject = inspect("app", ref, runtime=fake)
    return subject, ArchiveJob(subject, rootfs_diff(subject.info, work, runtime=fake), "zstd", ref)


def test_dump_archives_the_export_while_podman_writes_it_and_thaws_at_the_checkpoint_images(
    fake: FakeRuntime, ref: StoreRef, work: Path
) -> None:
    subject, job = _job(fake, ref, work)
    knob = work / "freezer"
    knob.write_text("FROZEN")
    dumped = dump(subject.info, work, True, runtime=fake, job=job, knob=knob)
    assert dumped.archive is not None and dumped.archive.key.startswith("app/")
    assert dumped.thawed and knob.read_text() == "THAWED"
    # thawed once, after the export started and before Podman's export ended
    assert fake.names()[-4:] == ["checkpoint", "thaw", "export_finish", "export_closed"]
    names = [m.name for m in dumped.archive.manifest.members]
    assert names[:2] == ["checkpoint/inventory.img", "checkpoint/pages-1.img"] and "rootfs-diff.tar" in names
    assert dumped.archive.manifest.timestamps["dump_finished"] == dumped.finished
    # the raw copy is Podman's export byte for byte: the archive stage can rebuild from it
    with tarfile.open(dumped.export) as raw:
        assert raw.getnames() == ["checkpoint/inventory.img", "checkpoint/pages-1.img", "config.dump", "spec.dump"]
    assert build_archive(subject, dumped, job.diff, "zstd", ref) is dumped.archive
    assert sorted(p.name for p in work.iterdir()) == ["deleted.files", "dump.tar", "freezer", "rootfs-diff.tar"]


def test_dump_whose_archive_fails_still_finishes_and_the_archive_is_rebuilt_from_its_copy(
    fake: FakeRuntime, ref: StoreRef, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject, job = _job(fake, ref, work)
    faults = work.parent / "faults"
    faults.write_text("archive\n")
    monkeypatch.setenv("FERRY_FAULTS_FILE", str(faults))
    dumped = dump(subject.info, work, False, runtime=fake, job=job)
    assert dumped.archive is None and dumped.export.exists()
    assert _nothing_stored(ref)
    archive = build_archive(subject, dumped, job.diff, "zstd", ref)
    assert archive.key.startswith("app/") and len(fake.called("checkpoint")) == 1


@pytest.mark.parametrize(
    ("leave_running", "dies_after"),
    [(True, 3000), (False, 0)],
    ids=["mid-export", "while-the-rootfs-diff-goes-in"],
)
def test_podman_dying_fails_the_dump_and_leaves_nothing(
    fake: FakeRuntime, ref: StoreRef, work: Path, leave_running: bool, dies_after: int
) -> None:
    subject, job = _job(fake, ref, work)
    fake.export_dies_after = dies_after
    with pytest.raises(CheckpointError, match="podman was killed"):
        dump(subject.info, work, leave_running, runtime=fake, job=job)
    assert not (work / "dump.tar").exists() and _nothing_stored(ref)


def test_a_full_staging_disk_fails_the_dump_and_lets_podman_finish(
    fake: FakeRuntime, ref: StoreRef, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject, job = _job(fake, ref, work)
    exports: list[object] = []
    real = fake.checkpoint_stream

    def recorded(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        stream = real(*args, **kwargs)  # type: ignore[arg-type]
        exports.append(stream)
        return stream

    monkeypatch.setattr(fake, "checkpoint_stream", recorded)
    real_open = Path.open

    def full(self: Path, mode: str = "r", *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        f = real_open(self, mode, *args, **kwargs)  # type: ignore[arg-type]
        if self.name == "dump.tar" and "w" in mode:
            f.write = lambda data: (_ for _ in ()).throw(OSError(28, "No space left on device"))  # type: ignore[method-assign]
        return f

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        dump(subject.info, work, True, runtime=fake, job=job)
    assert "export_closed" in fake.names() and not (work / "dump.tar").exists()
    assert ArchiveStore(ref.url).incomplete() == []


def test_stop_mode_compresses_the_rootfs_diff_while_criu_dumps(
    fake: FakeRuntime, ref: StoreRef, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject, job = _job(fake, ref, work)
    seen: list[list[str]] = []
    real = archive_stream.ArchiveOut.add_rootfs

    def recorded(self: archive_stream.ArchiveOut, diff: DiffResult) -> None:
        seen.append(fake.names())  # what Podman had been asked to do when the diff went in
        real(self, diff)

    monkeypatch.setattr(archive_stream.ArchiveOut, "add_rootfs", recorded)
    dumped = dump(subject.info, work, False, runtime=fake, job=job)
    [calls] = seen
    assert calls[-1] == "checkpoint"  # Podman started, nothing of its export read yet
    assert dumped.archive is not None
    names = [m.name for m in dumped.archive.manifest.members]
    assert names == ["rootfs-diff.tar", "deleted.files", *PODMAN_MEMBERS]
    with tarfile.open(fileobj=_stored(ref, dumped.archive.key), mode="r|*") as tar:
        assert [m.name for m in tar] == [*names, MANIFEST]


def test_leave_running_mode_adds_the_rootfs_diff_after_the_export(fake: FakeRuntime, ref: StoreRef, work: Path) -> None:
    subject, job = _job(fake, ref, work)
    knob = work / "freezer"
    knob.write_text("FROZEN")
    dumped = dump(subject.info, work, True, runtime=fake, job=job, knob=knob)
    assert dumped.archive is not None
    names = [m.name for m in dumped.archive.manifest.members]
    assert names == [*PODMAN_MEMBERS, "rootfs-diff.tar", "deleted.files"]


def test_a_store_failing_while_criu_dumps_leaves_the_dump_whole_and_nothing_stored(
    fake: FakeRuntime, ref: StoreRef, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subject, job = _job(fake, ref, work)

    def failing(self: archive_stream.ArchiveOut, diff: DiffResult) -> None:
        self.writer.add_path(diff.tar, "rootfs-diff.tar")  # type: ignore[arg-type]
        raise StoreError("Cannot upload: the connection was reset")

    monkeypatch.setattr(archive_stream.ArchiveOut, "add_rootfs", failing)
    dumped = dump(subject.info, work, False, runtime=fake, job=job)
    assert dumped.archive is None and _nothing_stored(ref)
    with tarfile.open(dumped.export) as raw:
        assert raw.getnames() == PODMAN_MEMBERS
    monkeypatch.undo()
    archive = build_archive(subject, dumped, job.diff, "zstd", ref)
    assert [m.name for m in archive.manifest.members] == ["rootfs-diff.tar", "deleted.files", *PODMAN_MEMBERS]
    assert len(fake.called("checkpoint")) == 1


def _stored(ref: StoreRef, key: str) -> BinaryIO:
    path = Path(ref.url.removeprefix("file://")) / key
    return io.BytesIO(zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()))

"""Dump: CRIU checkpoint of the (frozen) container through Podman, archived while Podman writes it.

Podman exports into a FIFO in the run's staging dir (:meth:`ferry.runtime.podman.Podman.checkpoint_stream`);
ferry reads it once, and each block goes two ways at the same time:

* into ``dump.tar``, the dump's raw copy (Podman's export layout, uncompressed, without the
  rootfs: ferry takes the diff itself, once, in the same frozen instant). It is what makes the
  dump resumable: if the archive cannot be finished (an upload error), the dump still finishes,
  and the archive stage rebuilds the archive from this copy, now or on a retry of the run,
  without a second dump;
* through the archive writer (tar, zstd, sha256 of every member and of the output) into the
  store, unpublished (:mod:`tasks.archive_stream`): nothing is written to disk and read back.

The archive is opened as soon as Podman is started. In stop mode the rootfs diff goes into it
first, compressed and uploaded while CRIU dumps (the two overlap on the host's cores); in
leave-running mode it goes in after the export, so the thaw never waits for it.

When the container is thawed: CRIU keeps a frozen cgroup frozen; everything Podman exports after
CRIU's dump is files in the container's directory (checkpoint images, the /dev/shm and volume
tars, made before the export starts), except the container log ``ctr.log``, which the running
container appends to and which Podman exports before the ``checkpoint/`` images. So the
container is thawed as soon as the export reaches ``checkpoint/``: the frozen window is the
rootfs diff, CRIU's dump and a few small files, not the export nor the upload. (A thaw earlier
than that could make Podman's tar of a growing ctr.log fail: Go's tar writer refuses a file
that grows while it is copied.) In stop mode the container is gone by then; thawing is a no-op.

Never retried blindly: a second dump of a stopped container would fail, and of a running one
would be a different snapshot.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from prefect import task
from prefect.cache_policies import DEFAULT
from prefect.runtime import flow_run

from ferry import progress
from ferry.archive.compression import check_compression
from ferry.errors import CheckpointError
from ferry.faults import maybe_fail
from ferry.options import DumpOptions
from ferry.resume import mark_dumped, mark_inflight
from ferry.runtime import CheckpointExport, CheckpointStats, ContainerInfo, Runtime, current
from ferry.staging import utcnow
from storage.ref import StoreRef
from tasks.archive_stream import ArchiveOut, ArchiveResult, manifest_template
from tasks.handoff import announce
from tasks.inspect import Subject
from tasks.rootfs_diff import DiffResult

log = logging.getLogger("ferry.dump")

EXPORT = "dump.tar"
FIFO = "dump.fifo"
BLOCK = 1 << 20


@dataclass(frozen=True)
class DumpResult:
    export: Path  # the raw copy of Podman's export
    leave_running: bool
    stats: CheckpointStats
    started: str
    finished: str
    options: DumpOptions = field(default_factory=DumpOptions)
    archive: ArchiveResult | None = None  # streamed into the store while Podman wrote; None: rebuild from export
    thawed: str = ""  # when the dump thawed the container ("" when it did not: no freezer knob given)


@dataclass(frozen=True)
class ArchiveJob:
    """What the dump needs to archive Podman's export as it comes."""

    subject: Subject
    diff: DiffResult
    compression: str = "zstd"
    ref: StoreRef | None = None
    handoff: str = ""  # a migration's hand-off: told where the archive will be, once it is opened


class _Tee(io.RawIOBase):
    """Reads Podman's export and copies every block read into ``dump.tar`` on its way."""

    def __init__(self, source: CheckpointExport, copy: BinaryIO, name: str) -> None:
        super().__init__()
        self._source = source
        self._copy = copy
        self._name = name
        self.failure: CheckpointError | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._source.read(len(buffer))
        try:
            self._copy.write(data)
        except OSError as exc:
            self.failure = CheckpointError(
                f"Cannot keep the copy of the dump of {self._name!r} in {getattr(self._copy, 'name', EXPORT)}: "
                f"{exc.strerror or exc}. Free space in the staging directory (FERRY_STAGING) and retry."
            )
            raise self.failure from exc
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        block = bytearray(BLOCK)
        while self.readinto(block):
            pass


class _Streaming:
    """One Podman export being read: the raw copy, the thaw, Podman's outcome."""

    def __init__(
        self,
        podman: CheckpointExport,
        copy: BinaryIO,
        info: ContainerInfo,
        leave_running: bool,
        runtime: Runtime,
        knob: Path | None,
    ) -> None:
        self.podman = podman
        self.leave_running = leave_running
        self.tee = _Tee(podman, copy, info.name)
        self.reader = io.BufferedReader(self.tee, BLOCK)
        self.info = info
        self.runtime = runtime
        self.knob = knob
        self.thawed = ""
        self.at_images = False
        self.done: tuple[CheckpointStats, str] | None = None
        self.failure: BaseException | None = None  # of the dump itself (Podman, the raw copy)

    def on_member(self, name: str) -> None:
        if (name == "checkpoint" or name.startswith("checkpoint/")) and not self.at_images:
            self.at_images = True
            self.thaw()
            maybe_fail("export")  # a point in the middle of Podman's export, for tests

    def thaw(self) -> None:
        if self.knob is not None and not self.thawed:
            self.runtime.thaw(self.knob)
            self.thawed = utcnow()
            log.debug("thawed %s: CRIU's dump is done, Podman is exporting", self.info.name)

    def finish_dump(self) -> tuple[CheckpointStats, str]:
        """Read the rest of the export (into the raw copy) and wait for Podman's outcome."""
        if self.done is not None:
            return self.done
        try:
            self.tee.drain()
            self.thaw()
            stats = self.podman.finish()
        except BaseException as exc:
            self.failure = exc
            raise
        self.done = (stats, utcnow())
        return self.done

    def archive(self, archiving: _Archiving, stage: progress.Stage) -> ArchiveResult | None:
        """The archive, streamed; None when it failed but the dump itself did not."""
        out = archiving.out
        if out is None:  # it failed while CRIU dumped
            self.finish_dump()
            return None
        out.stage = stage
        if archiving.rootfs_first:
            stage.advance(archiving.rootfs_bytes)
        try:
            out.add_export(self.reader, self.on_member)
            _, finished = self.finish_dump()
            maybe_fail("archive")
            if not archiving.rootfs_first:
                out.add_rootfs(archiving.job.diff)
            timestamps = {"dump_started": archiving.started, "dump_finished": finished}
            if self.thawed:
                timestamps["thawed"] = self.thawed
            out.finish(replace(archiving.template, timestamps=timestamps))
            archiving.commit()
        except Exception as exc:
            if self.failure is not None or self.tee.failure is not None:
                raise
            # The archive failed, not (so far) the dump: finish the dump into its raw copy,
            # which the archive stage rebuilds the archive from.
            archiving.discard(exc, failed=True)
            self.finish_dump()
            return None
        return out.result


class _Archiving:
    """The archive of one dump, opened before Podman's export is read. In stop mode the rootfs
    diff goes in first, compressed while CRIU dumps (:meth:`open` runs then); in leave-running
    mode it goes in after the export, so the thaw (at the export's ``checkpoint/``) never waits
    for it. A failure of the archive never fails the dump: the archive is discarded, and the
    archive stage rebuilds it from ``dump.tar``."""

    def __init__(self, job: ArchiveJob, staging: Path, started: str, options: DumpOptions, leave_running: bool) -> None:
        self.job = job
        self.staging = staging
        self.started = started
        self.compression = check_compression(job.compression)
        self.rootfs_first = not leave_running
        self.rootfs_bytes = sum(p.stat().st_size for p in (job.diff.tar, job.diff.deleted) if p)
        self.template = manifest_template(
            job.subject,
            job.diff,
            leave_running=leave_running,
            created=started,
            timestamps={"dump_started": started},
            options=options,
            run=str(flow_run.get_id() or ""),
        )
        self.out: ArchiveOut | None = None
        self.announcing: threading.Thread | None = None

    def open(self) -> None:
        """Open the archive (the store's upload) and, in stop mode, write the rootfs diff into it."""
        try:
            out = ArchiveOut(self.job.subject, self.compression, self.job.ref, self.staging, self.template)
            self.out = out.__enter__()
            if self.job.handoff and out.store is not None:
                self.announcing = announce(self.job.handoff, out.store.url_of(out.key))
            if self.rootfs_first:
                out.add_rootfs(self.job.diff)
        except Exception as exc:
            self.discard(exc, failed=True)

    def join(self) -> None:
        """Wait for the announcement to the waiting restore, if one is under way."""
        if self.announcing is not None:
            self.announcing.join()

    def commit(self) -> None:
        out, self.out = self.out, None
        if out is not None:
            out.__exit__(None, None, None)

    def discard(self, exc: BaseException, *, failed: bool) -> None:
        """Leave nothing of the archive in the store; ``failed``: the archive itself failed."""
        out, self.out = self.out, None
        if out is not None:
            with contextlib.suppress(Exception):
                out.__exit__(type(exc), exc, exc.__traceback__)
        if failed:
            log.warning(
                "the archive of %s could not be streamed (%s); it will be built from the dump's copy",
                self.job.subject.info.name,
                exc,
            )


def dump(
    info: ContainerInfo,
    staging: Path,
    leave_running: bool,
    runtime: Runtime | None = None,
    options: DumpOptions | None = None,
    *,
    job: ArchiveJob | None = None,
    knob: Path | None = None,
) -> DumpResult:
    """Dump the container; with ``job``, archive the dump into the store while Podman writes it.
    ``knob``: the freezer the container is frozen with, thawed once CRIU's dump is done."""
    maybe_fail("dump")
    runtime = runtime or current()
    options = options or DumpOptions()
    if not leave_running:
        mark_inflight(info.id)
    started = utcnow()
    export = staging / EXPORT
    archive: ArchiveResult | None = None
    archiving = _Archiving(job, staging, started, options, leave_running) if job is not None else None
    try:
        with contextlib.ExitStack() as stack:
            # "dump" on the terminal: until Podman starts its export (CRIU's dump is done then);
            # "archive": the export read, compressed and uploaded while Podman writes it.
            with progress.stage("dump", info.name):
                podman = stack.enter_context(
                    runtime.checkpoint_stream(
                        info,
                        staging / FIFO,
                        leave_running=leave_running,
                        options=options,
                        while_dumping=archiving.open if archiving is not None else None,
                    )
                )
                copy = stack.enter_context(export.open("wb"))
                streaming = _Streaming(podman, copy, info, leave_running, runtime, knob)
                if archiving is None:
                    stats, finished = streaming.finish_dump()
            if archiving is not None:
                total = podman.size_hint() + archiving.rootfs_bytes
                with progress.stage(
                    "archive",
                    f"{info.name}, {archiving.compression}",
                    total=total,
                    artifact=f"archive of {info.name}",
                ) as stage:
                    archive = streaming.archive(archiving, stage)
                    stats, finished = streaming.finish_dump()
                    if archive is not None:
                        stage.note = f"{progress.human_bytes((archive.stored or archive.digest).size)} stored"
            copy.flush()
            os.fsync(copy.fileno())
    except BaseException as exc:
        if archiving is not None:
            archiving.discard(exc, failed=False)
        export.unlink(missing_ok=True)  # a partial copy is no dump
        raise
    finally:
        if archiving is not None:
            archiving.join()
    return DumpResult(export, leave_running, stats, started, finished, options, archive, streaming.thawed)


@task(name="dump", retries=0, persist_result=True, cache_policy=DEFAULT - "knob")
def dump_task(
    info: ContainerInfo,
    staging: Path,
    leave_running: bool,
    generation: int = 0,
    options: DumpOptions | None = None,
    job: ArchiveJob | None = None,
    knob: Path | None = None,
) -> DumpResult:
    """``knob`` is left out of the cache key: a retry of the run passes none (it does not
    freeze a container it already dumped) and must get the first attempt's result back."""
    result = dump(info, staging, leave_running, options=options, job=job, knob=knob)
    mark_dumped(staging, generation)
    return result

"""Archive: the snapshot archive from the dump's raw copy, when the dump stage could not stream it.

The dump stage normally compresses, hashes and uploads Podman's export while Podman writes it
(:mod:`tasks.dump`), and this stage only hands its result on. When that streamed archive failed
(an upload error, an injected fault) the dump itself still finished, with its raw copy in
``dump.tar``: this stage rebuilds the archive from it, here or on a retry of the run, without a
second dump. See :mod:`tasks.archive_stream` for the archive's layout.
"""

from __future__ import annotations

from prefect import task
from prefect.runtime import flow_run

from ferry import progress
from ferry.archive.compression import Compression, check_compression
from ferry.faults import maybe_fail
from ferry.progress import human_bytes
from storage.ref import StoreRef
from tasks.archive_stream import ArchiveOut, ArchiveResult, archive_key, manifest_template
from tasks.dump import DumpResult
from tasks.inspect import Subject
from tasks.retry import transient
from tasks.rootfs_diff import DiffResult

__all__ = ["ArchiveResult", "archive_key", "archive_task", "build_archive"]


def build_archive(
    subject: Subject,
    dumped: DumpResult,
    diff: DiffResult,
    compression: str = "zstd",
    ref: StoreRef | None = None,
) -> ArchiveResult:
    """The archive the dump stage streamed, or else one built from its ``dump.tar``: written
    straight into the store (a temporary name and a rename on local disk, an uncommitted
    multipart upload on object stores), where it stays invisible (no sidecar) until the publish
    stage publishes it. Without a store, into the run's staging dir."""
    if dumped.archive is not None:
        return dumped.archive
    maybe_fail("archive")
    comp: Compression = check_compression(compression)
    info = subject.info
    template = manifest_template(
        subject,
        diff,
        leave_running=dumped.leave_running,
        created=dumped.started,
        timestamps={"dump_started": dumped.started, "dump_finished": dumped.finished},
        options=dumped.options,
        run=str(flow_run.get_id() or ""),
    )
    inputs = [p for p in (dumped.export, diff.tar, diff.deleted) if p is not None]
    total = sum(p.stat().st_size for p in inputs)
    with progress.stage("archive", f"{info.name}, {comp}", total=total, artifact=f"archive of {info.name}") as stage:
        with ArchiveOut(subject, comp, ref, dumped.export.parent, template, stage) as out:
            out.add_rootfs(diff)
            with dumped.export.open("rb") as export:
                out.add_export(export)
            out.finish(template)
        if out.result is None:
            raise RuntimeError("archive finished without a result")
        stored = out.result.stored or out.result.digest
        stage.note = f"{human_bytes(stored.size)} stored"
    return out.result


@task(name="archive", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient, persist_result=True)
def archive_task(
    subject: Subject,
    dumped: DumpResult,
    diff: DiffResult,
    compression: str = "zstd",
    ref: StoreRef | None = None,
) -> ArchiveResult:
    return build_archive(subject, dumped, diff, compression, ref)

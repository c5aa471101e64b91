"""Snapshot flow: inspect -> [ship image] -> freeze -> rootfs diff -> dump (thaw, archive) -> publish.

The dump stage archives Podman's export into the store while Podman writes it, and thaws the
container as soon as CRIU's dump is done (see :mod:`tasks.dump`); the archive stage only hands
that archive on, or rebuilds it from the dump's raw copy when streaming it failed.

In stop mode a failure after the dump rolls back: the container is restored on this host.
Stage results are persisted, so a retry of a failed run (Prefect's Retry button or
`prefect flow-run retry`) picks up after the last finished stage: a container is never dumped
twice for one snapshot, unless a rollback restarted it in between (see :mod:`ferry.resume`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from prefect import flow
from pydantic import Field

from ferry.locks import container_lock
from ferry.options import DumpOptions
from ferry.report import Timings, host_key, markdown
from ferry.resume import clear_inflight, generation, is_dumped
from ferry.staging import remove_run_dir, run_dir
from storage.default import store_url
from storage.ref import StoreRef
from tasks.archive import ArchiveResult, archive_task
from tasks.dump import ArchiveJob, DumpResult, dump_task
from tasks.freeze import frozen
from tasks.handoff import hand_over_task
from tasks.inspect import inspect_task
from tasks.publish import discard_task, publish_task
from tasks.rollback import rollback_task
from tasks.rootfs_diff import rootfs_diff_task
from tasks.ship_image import ship_image_task

#: A run that takes longer fails (a stop-mode one rolls back): a hung dump or upload never holds the container.
SNAPSHOT_TIMEOUT_S = 6 * 3600


@dataclass(frozen=True)
class SnapshotResult:
    url: str
    container: str
    mode: str
    archive_bytes: int
    frozen_ms: float
    image_url: str = ""


@flow(name="ferry-snapshot", log_prints=True, persist_result=True, timeout_seconds=SNAPSHOT_TIMEOUT_S)
def snapshot(
    container: Annotated[str, Field(min_length=1)],
    to: str = "",
    leave_running: bool = False,
    compress: Literal["zstd", "gzip", "none"] = "zstd",
    with_image: bool = False,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
    tcp_established: bool = True,
    file_locks: bool = True,
    allow_bind_mounts: bool = False,
    handoff: str = "",
) -> SnapshotResult:
    """Checkpoint one container on this host into a store.

    Args:
        container: Container name or id on this host.
        to: Store URL: s3://bucket/prefix, gs://bucket/prefix or file:///path
            (default: the Prefect Variable ferry-store, else FERRY_STORE on the worker).
        leave_running: Keep the container running (a backup) instead of stopping it (a migration).
        compress: Archive compression.
        with_image: Also store the container's image (once per image id), for restores on fresh hosts.
        storage_options: fsspec options for the store, e.g. an endpoint. No secrets: parameters are shown in the UI.
        storage_secret: A Prefect block with the store's credentials: a Secret block (NAME, a JSON object of
            fsspec options), aws-credentials/NAME (AwsCredentials) or gcp-credentials/NAME (GcpCredentials).
        tcp_established: Dump established TCP connections (default: on; without it, open connections fail the dump).
        file_locks: Dump file locks (default: on; without it, a held file lock fails the dump).
        allow_bind_mounts: Snapshot a container that bind-mounts host paths; their content is NOT in the archive.
        handoff: Set by ferry-migrate, not by hand: where to hand the archive's URL to the waiting restore.
    """
    to = store_url(to)
    options = DumpOptions(tcp_established=tcp_established, file_locks=file_locks)
    timings = Timings()
    staging = run_dir("snapshot", container)
    gen = generation(staging)
    ref = StoreRef(to, storage_options, storage_secret)
    with container_lock(container):
        with timings("inspect"):
            subject = inspect_task(container, ref, gen, allow_bind_mounts)
        image = ""
        if with_image:
            with timings("ship-image"):
                image = ship_image_task(subject, ref, staging)
        archive: ArchiveResult | None = None
        dumped: DumpResult | None = None
        try:
            with frozen(subject.info, skip=is_dumped(staging, gen)) as knob:
                with timings("rootfs-diff"):
                    diff = rootfs_diff_task(subject.info, staging, gen)
                with timings("dump"):
                    job = ArchiveJob(subject, diff, compress, ref, handoff)
                    dumped = dump_task(subject.info, staging, leave_running, gen, options, job, knob)
            with timings("archive"):
                archive = archive_task(subject, dumped, diff, compress, ref)
            with timings("publish"):
                url = publish_task(archive, ref)
        except Exception as exc:
            if not leave_running:
                # The container runs again, so a retry must dump afresh: this run's archive, if
                # it reached the store unpublished, is garbage. In leave-running mode it stays
                # for a retry to publish.
                rollback_task(subject.info, exc, staging)
                if archive is not None:
                    discard_task(archive, ref)
                elif dumped is not None and dumped.archive is not None:
                    discard_task(dumped.archive, ref)
            raise
        if handoff:  # after the try: once published, a waiting restore may be restoring it; never roll back
            hand_over_task(handoff, url)
        clear_inflight(subject.info.id)
    remove_run_dir(staging)
    result = SnapshotResult(
        url, subject.info.name, archive.manifest.mode, archive.digest.size, dumped.stats.frozen_us / 1000, image
    )
    summary = snapshot_summary(result, archive.manifest, timings)
    markdown(f"Snapshot of {result.container}", summary, host_key("snapshot", result.container))
    return result


def snapshot_summary(result: SnapshotResult, manifest: Any, timings: Timings) -> str:
    raw = sum(m.size for m in manifest.members)
    ratio = raw / result.archive_bytes if result.archive_bytes else 0.0
    return (
        f"| | |\n|---|---|\n| container | `{result.container}` ({manifest.container.image_name}) |\n"
        f"| mode | {result.mode} |\n| archive | `{result.url}` |\n"
        f"| size | {result.archive_bytes:,} bytes compressed, {raw:,} bytes of members (ratio {ratio:.2f}) |\n"
        f"| rootfs diff | {manifest.rootfs.get('files', 0)} files, {manifest.rootfs.get('deleted', 0)} deleted |\n"
        f"| frozen (CRIU) | {result.frozen_ms:.0f} ms |\n| source | {manifest.source.host}, kernel "
        f"{manifest.source.kernel}, CRIU {manifest.source.criu}, Podman {manifest.source.podman} |\n"
        + (f"| image | `{result.image_url}` |\n" if result.image_url else "")
        + f"\n## Stages\n\n{timings.table()}\n"
    )

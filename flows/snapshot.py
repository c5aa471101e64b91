"""Snapshot flow: inspect -> freeze -> rootfs diff -> dump -> thaw -> archive -> upload.

In stop mode a failure after the dump rolls back: the container is restored on this host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from prefect import flow
from pydantic import Field

from ferry.staging import new_run_dir, remove_run_dir
from tasks.archive import archive_task
from tasks.dump import dump_task
from tasks.freeze import frozen
from tasks.inspect import inspect_task
from tasks.rollback import rollback_task
from tasks.rootfs_diff import rootfs_diff_task
from tasks.ship_image import ship_image_task
from tasks.upload import upload_task


@dataclass(frozen=True)
class SnapshotResult:
    url: str
    container: str
    mode: str
    archive_bytes: int
    frozen_ms: float
    image_url: str = ""


@flow(name="ferry-snapshot", log_prints=True)
def snapshot(
    container: Annotated[str, Field(min_length=1, description="Container name or id on this host")],
    to: Annotated[str, Field(min_length=1, description="Store URL: file:///path, s3://bucket/prefix, gs://...")],
    leave_running: Annotated[
        bool,
        Field(description="Keep the container running (nightly backup) instead of stopping it (migration)"),
    ] = False,
    compress: Annotated[Literal["zstd", "gzip", "none"], Field(description="Archive compression")] = "zstd",
    storage_options: Annotated[dict[str, Any] | None, Field(description="fsspec options for the store")] = None,
    with_image: Annotated[
        bool, Field(description="Also store the container's image (once per image id) for restores on fresh hosts")
    ] = False,
    storage_secret: Annotated[
        str | None,
        Field(description="Name of a Prefect Secret block holding a JSON object of storage credentials"),
    ] = None,
) -> SnapshotResult:
    subject = inspect_task(container, to, storage_options, storage_secret)
    staging = new_run_dir("snapshot", subject.info.name)
    image = ship_image_task(subject, to, staging, storage_options, storage_secret) if with_image else ""
    with frozen(subject.info):
        diff = rootfs_diff_task(subject.info, staging)
        dumped = dump_task(subject.info, staging, leave_running)
    try:
        archive = archive_task(subject, dumped, diff, compress)
        url = upload_task(archive, to, storage_options, storage_secret)
    except Exception as exc:
        if not leave_running:
            rollback_task(subject.info, exc)
        raise
    remove_run_dir(staging)
    return SnapshotResult(
        url, subject.info.name, archive.manifest.mode, archive.digest.size, dumped.stats.frozen_us / 1000, image
    )

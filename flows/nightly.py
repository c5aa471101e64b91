"""Nightly flow: snapshot every selected container (leave-running), then apply retention.

One container failing does not stop the others; the run ends Failed when any did, with a table
artifact saying what happened to each.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow
from pydantic import BaseModel, Field

from ferry.errors import NightlyFailed
from ferry.report import host_key, table
from flows.snapshot import snapshot
from storage.default import store_url
from storage.ref import StoreRef
from tasks.expire_results import expire_results_task
from tasks.prune import prune_task
from tasks.select import select_task

#: Below the schedule's 24 h: a hung night ends before the next one starts (which would be cancelled).
NIGHTLY_TIMEOUT_S = 20 * 3600


class Retention(BaseModel):
    """How many archives to keep per container; the newest one is always kept."""

    keep: Annotated[int | None, Field(ge=1, description="Keep the N newest archives of each container")] = None
    older_than_days: Annotated[
        int | None, Field(ge=1, description="Only delete archives older than this many days")
    ] = None


NO_RETENTION = Retention()


@flow(name="ferry-nightly", log_prints=True, timeout_seconds=NIGHTLY_TIMEOUT_S)
def nightly(
    to: str = "",
    containers: list[str] = [],  # noqa: B006 - Prefect copies parameters per run
    label: str | None = None,
    retention: Retention = NO_RETENTION,
    compress: Literal["zstd", "gzip", "none"] = "zstd",
    with_image: bool = False,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
    tcp_established: bool = True,
    file_locks: bool = True,
    allow_bind_mounts: bool = False,
    result_retention_days: Annotated[int, Field(ge=0)] = 14,
) -> list[dict[str, Any]]:
    """Leave-running snapshots of several containers, then retention. One failure does not stop the others.

    Args:
        to: Store URL: s3://bucket/prefix, gs://bucket/prefix or file:///path
            (default: the Prefect Variable ferry-store, else FERRY_STORE on the worker).
        containers: Container names to snapshot.
        label: Also snapshot every running container with this label (key or key=value), e.g. ferry.backup=nightly.
        retention: Applied per container after the snapshots; the newest archive is always kept.
        compress: Archive compression.
        with_image: Also store each image, once per image id.
        storage_options: fsspec options for the store, e.g. an endpoint. No secrets: parameters are shown in the UI.
        storage_secret: A Prefect block with the store's credentials: a Secret block (NAME, a JSON object of
            fsspec options), aws-credentials/NAME (AwsCredentials) or gcp-credentials/NAME (GcpCredentials).
        tcp_established: Dump established TCP connections (default: on; without it, open connections fail the dump).
        file_locks: Dump file locks (on by default).
        allow_bind_mounts: Also snapshot containers that bind-mount host paths (their content is NOT in the archive).
        result_retention_days: Delete this host's persisted Prefect results (what a retry resumes from) older than
            this many days; 0 keeps them.
    """
    to = store_url(to)
    names = select_task(containers, label)
    rows: list[dict[str, Any]] = []
    for name in names:
        state = snapshot(
            name,
            to,
            leave_running=True,
            compress=compress,
            with_image=with_image,
            storage_options=storage_options,
            storage_secret=storage_secret,
            tcp_established=tcp_established,
            file_locks=file_locks,
            allow_bind_mounts=allow_bind_mounts,
            return_state=True,
        )
        if state.is_completed():
            result = state.result()
            rows.append(
                {
                    "container": name,
                    "status": "ok",
                    "archive": result.url,
                    "bytes": result.archive_bytes,
                    "frozen_ms": round(result.frozen_ms),
                    "error": "",
                }
            )
        else:
            rows.append(
                {
                    "container": name,
                    "status": "FAILED",
                    "archive": "",
                    "bytes": 0,
                    "frozen_ms": 0,
                    "error": str(state.message or state.name)[:500],
                }
            )
    if retention.keep or retention.older_than_days:
        ok = [r["container"] for r in rows if r["status"] == "ok"]
        pruned = prune_task(
            StoreRef(to, storage_options, storage_secret), ok, retention.keep, retention.older_than_days
        )
        for row in rows:
            row["pruned"] = sum(1 for url in pruned if f"/{row['container']}/" in url)
    table(rows, host_key("nightly"), f"Nightly snapshots to {to}")
    if result_retention_days:
        expired = expire_results_task(result_retention_days)
        print(f"Expired {expired} persisted results older than {result_retention_days} days.")
    failed = [r["container"] for r in rows if r["status"] != "ok"]
    if failed:
        raise NightlyFailed(
            f"{len(failed)} of {len(rows)} snapshots failed: {', '.join(failed)}. See the table artifact."
        )
    return rows

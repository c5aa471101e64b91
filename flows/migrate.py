"""Migration between hosts: snapshot on the source host's worker, restore on the target's.

Each host runs a Prefect worker on its own work pool with ferry's deployments named after the
host (``ferry-snapshot/<host>``, ``ferry-restore/<host>``, ``ferry-source/<host>``). The archive
in the object store is the hand-off. If anything after the dump fails, the container is
restored on the source host: a migration never loses a container.

The target's restore is started first and gets ready (:mod:`tasks.handoff`) while the container
still runs on the source; the source's snapshot starts only once the target waits, ready, and
hands it the archive's URL as soon as it is published. A target that cannot get ready (its worker
down, the name taken there) fails the migration before anything is stopped.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from prefect import flow
from prefect.client.schemas.objects import FlowRun
from prefect.runtime import flow_run
from pydantic import Field

from ferry.errors import MigrationFailed
from ferry.options import check_rename, restore_options
from ferry.report import ARCHIVE_LINK, Timings, link, markdown
from storage.default import store_url
from storage.ref import StoreRef
from tasks.child_runs import ever_ran, run_child, start_child, wait_child, why
from tasks.handoff import ABORT, COMING, READY, WAITING, put, state, withdraw
from tasks.locate import archive_of_run_task


@flow(name="ferry-migrate", log_prints=True, timeout_seconds=24 * 3600)
def migrate(
    container: Annotated[str, Field(min_length=1)],
    source_host: Annotated[str, Field(min_length=1)],
    target_host: Annotated[str, Field(min_length=1)],
    via: str = "",
    new_name: str | None = None,
    compress: Literal["zstd", "gzip", "none"] = "zstd",
    with_image: bool = False,
    allow_unsigned: bool = False,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
    timeout_minutes: Annotated[int, Field(ge=1)] = 60,
    tcp_established: bool = True,
    tcp_close: bool = False,
    file_locks: bool = True,
    ignore_static_ip: bool = False,
    ignore_static_mac: bool = False,
    publish: list[str] | None = None,
) -> dict[str, str]:
    """Move a container from one host to another; on any failure after the dump it runs on the source again.

    Args:
        container: The container to move.
        source_host: The host it runs on now (the suffix of its ferry deployments, e.g. ferry-snapshot/<host>).
        target_host: The host to move it to.
        via: Store URL both hosts reach: s3://bucket/prefix, gs://bucket/prefix, file:///shared/path
            (default: the Prefect Variable ferry-store, else FERRY_STORE on the worker).
        new_name: Its name on the target (default: the same).
        compress: Archive compression.
        with_image: Ship the image too (the target does not have it).
        allow_unsigned: Let the target restore the archive even when it is not signed by a key in the target's
            keyring (FERRY_TRUSTED_KEYS), e.g. when the source host has no signing key yet.
        storage_options: fsspec options for the store, e.g. an endpoint. No secrets: parameters are shown in the UI.
        storage_secret: A Prefect block with the store's credentials: a Secret block (NAME, a JSON object of
            fsspec options), aws-credentials/NAME (AwsCredentials) or gcp-credentials/NAME (GcpCredentials).
        timeout_minutes: Give up waiting for each step (snapshot, restore, rollback, remove) after this long; a
            step given up on is cancelled, so it never runs later.
        tcp_established: Keep established TCP connections across the move (default: on).
        tcp_close: Close them instead (the container's peers reconnect); excludes tcp_established.
        file_locks: Dump and restore file locks (default: on).
        ignore_static_ip: Let the target's network assign a fresh IP (default: off, the container keeps its IP).
        ignore_static_mac: Let the target's network assign a fresh MAC address (default: off).
        publish: Publish ports on the target instead of the archived ones, Podman's syntax.
    """
    # Checked before anything stops: a contradiction is a usage error, not a failed migration.
    via = store_url(via, "store to migrate through (via)")
    options = restore_options(
        "migrate",
        tcp_established=tcp_established,
        tcp_close=tcp_close,
        file_locks=file_locks,
        ignore_static_ip=ignore_static_ip,
        ignore_static_mac=ignore_static_mac,
        publish=publish,
    )
    check_rename(options, new_name, "new_name")
    network = {
        "tcp_established": options.tcp_established,
        "tcp_close": options.tcp_close,
        "file_locks": options.file_locks,
        "ignore_static_ip": options.ignore_static_ip,
        "ignore_static_mac": options.ignore_static_mac,
        "publish": list(options.publish),
    }
    timings = Timings()
    timeout_s = timeout_minutes * 60.0
    store = {"storage_options": storage_options, "storage_secret": storage_secret}
    rollback = {"container": container, "action": "rollback"}
    token = str(flow_run.get_id() or f"{container}-{time.time_ns()}")
    put(token, WAITING, container=container)
    try:  # the hand-off is withdrawn however the migration ends: a restore still waiting gives up
        target = start_child(
            f"ferry-restore/{target_host}",
            {
                "name": new_name,
                "allow_unsigned": allow_unsigned,
                "handoff": token,
                **network,
                **store,
            },
        )
        with timings("target ready"):
            waiting = wait_child(target, timeout_s, poll_s=0.2, until=lambda: state(token) == READY)
        if _final(waiting) or state(token) != READY:
            raise MigrationFailed(_not_ready(container, source_host, target_host, waiting, timeout_s))
        with timings("snapshot on source"):
            snap = run_child(
                f"ferry-snapshot/{source_host}",
                {
                    "container": container,
                    "to": via,
                    "leave_running": False,
                    "compress": compress,
                    "with_image": with_image,
                    # Connections are always dumped, so the snapshot never fails on them; the restore
                    # on the target decides whether they carry on or are closed.
                    "tcp_established": True,
                    "file_locks": file_locks,
                    "handoff": token,
                    **store,
                },
                timeout_s,
            )
        if not _completed(snap):
            if state(token) in (READY, COMING):
                put(token, ABORT)  # the waiting restore ends without touching anything
            # Wait for the target either way: had it been handed the archive before the snapshot
            # run failed, it restores the container, and rolling back here would run it twice.
            rest = wait_child(target, timeout_s)
            if not _completed(rest):
                back = None
                if snap.state is not None and snap.state.is_cancelled() and ever_ran(snap):
                    # Killed while it ran: it may have stopped the container without rolling back.
                    with timings("rollback on source"):
                        back = run_child(f"ferry-source/{source_host}", rollback, timeout_s)
                raise MigrationFailed(_snapshot_failed(container, source_host, target_host, snap, back, timeout_s))
        url = archive_of_run_task(StoreRef(via, storage_options, storage_secret), container, str(snap.id))
        link(url, ARCHIVE_LINK)
        with timings("restore on target"):
            rest = wait_child(target, timeout_s)
    finally:
        withdraw(token)
    if not _completed(rest):
        with timings("rollback on source"):
            back = run_child(f"ferry-source/{source_host}", rollback, timeout_s)
        if _completed(back):
            raise MigrationFailed(
                f"The restore of {container!r} on {target_host} failed ({why(rest)}). The container was restored "
                f"on {source_host} from its local checkpoint and is running there again. Archive: {url}"
            )
        raise MigrationFailed(
            f"The restore of {container!r} on {target_host} failed ({why(rest)}) and so did restoring it on "
            f"{source_host} ({why(back)}). Its checkpoint is kept on {source_host}: run `podman container "
            f"restore --keep {container}` there, or `ferry restore {url}` on any host."
        )
    with timings("remove from source"):
        removed = run_child(f"ferry-source/{source_host}", {"container": container, "action": "remove"}, timeout_s)
    if not _completed(removed):
        # It runs on the target: rolling back now would run it twice. The operator removes the
        # stopped copy on the source.
        raise MigrationFailed(
            f"{container!r} runs on {target_host} now (restore run {rest.id}), but removing its stopped copy on "
            f"{source_host} failed ({why(removed)}). Run `podman rm {container}` on {source_host}; do not start "
            f"it there. Archive: {url}"
        )
    summary = (
        f"| | |\n|---|---|\n| container | `{container}` → `{new_name or container}` |\n"
        f"| from → to | {source_host} → {target_host} |\n| archive | `{url}` |\n"
        f"| snapshot run | {snap.id} |\n| restore run | {rest.id} |\n\n## Stages\n\n{timings.table()}\n"
    )
    markdown(f"Migration of {container}", summary, f"migrate-{source_host}-{container}")
    return {"archive": url, "source": source_host, "target": target_host, "at": time.strftime("%FT%TZ", time.gmtime())}


def _completed(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_completed()


def _final(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_final()


def _not_ready(container: str, source: str, target: str, run: FlowRun, timeout_s: float) -> str:
    if _final(run) and run.state is not None and not run.state.is_cancelled():
        return (
            f"The restore on {target} could not get ready ({why(run)}), so {container!r} was not stopped: it "
            f"still runs on {source}."
        )
    return (
        f"The restore on {target} did not get ready within {timeout_s:.0f} s (run {run.id}: {why(run)}); it was "
        f"cancelled, and {container!r} was not stopped: it still runs on {source}. Is the ferry worker on "
        f"{target} running?"
    )


def _snapshot_failed(
    container: str, source: str, target: str, snap: FlowRun, back: FlowRun | None, timeout_s: float
) -> str:
    state = snap.state
    if state is not None and state.is_cancelled():
        gave_up = (
            f"The snapshot of {container!r} on {source} did not finish within {timeout_s:.0f} s and was cancelled "
            f"(run {snap.id}: {why(snap)}); it will not run later. Nothing was restored on {target}."
        )
        if back is None:
            return f"{gave_up} It never started: is the ferry worker on {source} running?"
        if _completed(back):
            return f"{gave_up} It had started; {container!r} runs on {source} again."
        return (
            f"{gave_up} It had started, and bringing {container!r} back on {source} failed ({why(back)}): check it "
            f"there (`podman container restore --keep {container}` restores a checkpointed one)."
        )
    if state is None or not state.is_final():
        return (
            f"The snapshot of {container!r} on {source} did not finish within {timeout_s:.0f} s and its "
            f"cancellation is not confirmed (run {snap.id}: {why(snap)}). Cancel it (`prefect flow-run cancel "
            f"{snap.id}`) before its worker comes back, then check {container!r} on {source}."
        )
    return (
        f"The snapshot of {container!r} on {source} failed ({why(snap)}). Nothing was restored on {target}; the "
        f"container stays on {source} (a stop-mode snapshot restores it there when anything after the dump fails)."
    )

"""Migration between hosts: snapshot on the source host's worker, restore on the target's.

Each host runs a Prefect worker on its own work pool with ferry's deployments named after the
host (``ferry-snapshot/<host>``, ``ferry-restore/<host>``, ``ferry-source/<host>``). The archive
in the object store is the hand-off. If anything after the dump fails, the container is
restored on the source host: a migration never loses a container.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from prefect import flow
from prefect.deployments import run_deployment
from pydantic import Field

from ferry.errors import MigrationFailed
from ferry.options import restore_options
from ferry.report import Timings, markdown
from storage.ref import StoreRef
from tasks.locate import archive_of_run_task


def _run(name: str, parameters: dict[str, Any], timeout_s: float) -> Any:
    return run_deployment(name, parameters=parameters, timeout=timeout_s, poll_interval=2)


@flow(name="ferry-migrate", log_prints=True)
def migrate(
    container: Annotated[str, Field(min_length=1)],
    source_host: Annotated[str, Field(min_length=1)],
    target_host: Annotated[str, Field(min_length=1)],
    via: Annotated[str, Field(min_length=1)],
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
        via: Store URL both hosts reach: s3://bucket/prefix, gs://bucket/prefix, file:///shared/path.
        new_name: Its name on the target (default: the same).
        compress: Archive compression.
        with_image: Ship the image too (the target does not have it).
        allow_unsigned: Let the target restore the archive even when it is not signed by a key in the target's
            keyring (FERRY_TRUSTED_KEYS), e.g. when the source host has no signing key yet.
        storage_options: fsspec options for the store, e.g. an endpoint. No secrets: parameters are shown in the UI.
        storage_secret: Name of a Prefect Secret block holding a JSON object of storage credentials.
        timeout_minutes: Give up waiting for a host's worker after this long.
        tcp_established: Keep established TCP connections across the move (default: on).
        tcp_close: Close them instead (the container's peers reconnect); excludes tcp_established.
        file_locks: Dump and restore file locks (default: on).
        ignore_static_ip: Let the target's network assign a fresh IP (default: off, the container keeps its IP).
        ignore_static_mac: Let the target's network assign a fresh MAC address (default: off).
        publish: Publish ports on the target instead of the archived ones, Podman's syntax.
    """
    # Checked before anything stops: a contradiction is a usage error, not a failed migration.
    options = restore_options(
        "migrate",
        tcp_established=tcp_established,
        tcp_close=tcp_close,
        file_locks=file_locks,
        ignore_static_ip=ignore_static_ip,
        ignore_static_mac=ignore_static_mac,
        publish=publish,
    )
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
    with timings("snapshot on source"):
        snap = _run(
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
                **store,
            },
            timeout_s,
        )
    if not snap.state or not snap.state.is_completed():
        raise MigrationFailed(
            f"The snapshot of {container!r} on {source_host} failed ({_why(snap)}). Nothing was restored on "
            f"{target_host}; the container stays on {source_host} (a stop-mode snapshot restores it there when "
            "anything after the dump fails)."
        )
    url = archive_of_run_task(StoreRef(via, storage_options, storage_secret), container, str(snap.id))
    with timings("restore on target"):
        rest = _run(
            f"ferry-restore/{target_host}",
            {"archive": url, "name": new_name, "allow_unsigned": allow_unsigned, **network, **store},
            timeout_s,
        )
    if not rest.state or not rest.state.is_completed():
        with timings("rollback on source"):
            back = _run(f"ferry-source/{source_host}", {"container": container, "action": "rollback"}, timeout_s)
        if back.state and back.state.is_completed():
            raise MigrationFailed(
                f"The restore of {container!r} on {target_host} failed ({_why(rest)}). The container was restored "
                f"on {source_host} from its local checkpoint and is running there again. Archive: {url}"
            )
        raise MigrationFailed(
            f"The restore of {container!r} on {target_host} failed ({_why(rest)}) and so did restoring it on "
            f"{source_host} ({_why(back)}). Its checkpoint is kept on {source_host}: run `podman container "
            f"restore --keep {container}` there, or `ferry restore {url}` on any host."
        )
    with timings("remove from source"):
        _run(f"ferry-source/{source_host}", {"container": container, "action": "remove"}, timeout_s)
    summary = (
        f"| | |\n|---|---|\n| container | `{container}` → `{new_name or container}` |\n"
        f"| from → to | {source_host} → {target_host} |\n| archive | `{url}` |\n"
        f"| snapshot run | {snap.id} |\n| restore run | {rest.id} |\n\n## Stages\n\n{timings.table()}\n"
    )
    markdown(f"Migration of {container}", summary, f"migrate-{container}")
    return {"archive": url, "source": source_host, "target": target_host, "at": time.strftime("%FT%TZ", time.gmtime())}


def _why(run: Any) -> str:
    state = getattr(run, "state", None)
    if state is None:
        return "no state"
    return f"{state.name}: {(state.message or '').strip()[:300]}"

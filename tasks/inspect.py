"""Inspect: which container and image, this host's runtime versions, a writable store."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prefect import task

from ferry import progress
from ferry.archive.manifest import Source
from ferry.errors import ContainerStateError
from ferry.resume import clear_inflight, is_inflight
from ferry.runtime import ContainerInfo, Runtime, current
from storage.ref import StoreRef

log = logging.getLogger("ferry.inspect")


@dataclass(frozen=True)
class Subject:
    info: ContainerInfo
    source: Source


def inspect(
    container: str,
    ref: StoreRef,
    runtime: Runtime | None = None,
    allow_bind_mounts: bool = False,
) -> Subject:
    """Look the container up and make sure the store takes writes, before anything stops."""
    runtime = runtime or current()
    with progress.stage("inspect", container):
        info = runtime.inspect(container)
        check_mounts(info, allow_bind_mounts)
        if info.state == "exited" and info.checkpointed and is_inflight(info.id):
            # A previous run died between its stop-mode dump and the upload: bring the container
            # back first (from the checkpoint Podman kept), then snapshot it afresh.
            log.warning("container %s was left stopped by an interrupted snapshot; restoring it first", info.name)
            runtime.restore_local(info.id)
            clear_inflight(info.id)
            info = runtime.inspect(container)
        ref.open().check_writable()
        return Subject(info, runtime.source())


def check_mounts(info: ContainerInfo, allow_bind_mounts: bool) -> None:
    """Named volumes travel in the archive; a bind-mounted host path cannot: refuse it, unless allowed."""
    binds = info.bind_mounts
    if not binds:
        return
    listed = ", ".join(f"{m.source} -> {m.destination}" for m in binds)
    if allow_bind_mounts:
        log.warning(
            "container %s bind-mounts host paths (%s): their content is not in the snapshot; a restore "
            "needs the same paths on the restoring host",
            info.name,
            listed,
        )
        return
    raise ContainerStateError(
        f"Container {info.name!r} bind-mounts host paths ({listed}). A host path's content stays on "
        "this host and cannot travel in an archive, so a restore elsewhere would lack it. Move the data "
        "into a named volume (`podman volume create NAME`, then run the container with `-v NAME:DEST`): "
        "named volumes travel with the snapshot. Or snapshot without their content with "
        "--allow-bind-mounts (flow parameter allow_bind_mounts) when the restoring host provides the "
        "same paths. Nothing was frozen or stopped."
    )


@task(name="inspect", retries=0, persist_result=True)
def inspect_task(
    container: str,
    ref: StoreRef,
    generation: int = 0,  # part of the cache key: a rollback makes a retry look again
    allow_bind_mounts: bool = False,
) -> Subject:
    return inspect(container, ref, allow_bind_mounts=allow_bind_mounts)

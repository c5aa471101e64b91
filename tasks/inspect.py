"""Stage 0, inspect: which container and image, this host's runtime versions, a writable store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prefect import task

from ferry.archive.manifest import Source
from ferry.locks import clear_inflight, is_inflight
from ferry.runtime import ContainerInfo, Podman
from storage.options import resolve
from storage.store import ArchiveStore

log = logging.getLogger("ferry.inspect")


@dataclass(frozen=True)
class Subject:
    info: ContainerInfo
    source: Source


def inspect(
    container: str,
    store_url: str,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
    runtime: Podman | None = None,
) -> Subject:
    """Look the container up and make sure the store takes writes, before anything stops."""
    runtime = runtime or Podman()
    info = runtime.inspect(container)
    if info.state == "exited" and info.checkpointed and is_inflight(info.id):
        # A previous run died between its stop-mode dump and the upload: bring the container
        # back first (from the checkpoint Podman kept), then snapshot it afresh.
        log.warning("container %s was left stopped by an interrupted snapshot; restoring it first", info.name)
        runtime.restore_local(info.id)
        clear_inflight(info.id)
        info = runtime.inspect(container)
    ArchiveStore(store_url, resolve(storage_options, storage_secret)).check_writable()
    return Subject(info, runtime.source())


@task(name="inspect", retries=0, persist_result=True)
def inspect_task(
    container: str,
    store_url: str,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
    generation: int = 0,  # part of the cache key: a rollback makes a retry look again
) -> Subject:
    return inspect(container, store_url, storage_options, storage_secret)

"""Restore stage 4b, locate (``--latest CONTAINER``): the newest complete archive of a container."""

from __future__ import annotations

from typing import Any

from prefect import task

from ferry.errors import ArchiveNotFoundError
from storage.options import resolve
from storage.store import ArchiveStore


def locate(
    store_url: str, container: str, storage_options: dict[str, Any] | None = None, storage_secret: str | None = None
) -> str:
    entries = ArchiveStore(store_url, resolve(storage_options, storage_secret)).archives(container)
    if not entries:
        raise ArchiveNotFoundError(
            f"There is no complete snapshot of container {container!r} in {store_url}. "
            f"List what there is with `ferry ls {store_url}`."
        )
    return entries[0].url


@task(name="locate", retries=2, retry_delay_seconds=[2, 10])
def locate_task(
    store_url: str, container: str, storage_options: dict[str, Any] | None = None, storage_secret: str | None = None
) -> str:
    return locate(store_url, container, storage_options, storage_secret)

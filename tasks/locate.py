"""Restore stage 4b, locate (``--latest CONTAINER``): the newest complete archive of a container."""

from __future__ import annotations

from prefect import task

from ferry.errors import ArchiveNotFoundError
from storage.ref import StoreRef


def locate(ref: StoreRef, container: str) -> str:
    entries = ref.open().archives(container)
    if not entries:
        raise ArchiveNotFoundError(
            f"There is no complete snapshot of container {container!r} in {ref.url}. "
            f"List what there is with `ferry ls {ref.url}`."
        )
    return entries[0].url


@task(name="locate", retries=2, retry_delay_seconds=[2, 10])
def locate_task(ref: StoreRef, container: str) -> str:
    return locate(ref, container)


def archive_of_run(ref: StoreRef, container: str, run_id: str) -> str:
    """The archive a given snapshot flow run wrote (its manifest names the run)."""
    for entry in ref.open().archives(container):
        if entry.sidecar.manifest.run == run_id:
            return entry.url
    raise ArchiveNotFoundError(f"Flow run {run_id} left no complete archive of {container!r} in {ref.url}.")


@task(name="find-archive", retries=2, retry_delay_seconds=[2, 10])
def archive_of_run_task(ref: StoreRef, container: str, run_id: str) -> str:
    return archive_of_run(ref, container, run_id)

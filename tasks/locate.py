"""Locate (``--latest CONTAINER``): the newest complete archive of a container."""

from __future__ import annotations

from prefect import task

from ferry import progress
from ferry.errors import ArchiveNotFoundError, UnsupportedArchiveError
from storage.ref import StoreRef
from tasks.retry import transient


def locate(ref: StoreRef, container: str) -> str:
    """The newest complete archive of ``container``. A broken sidecar (unreadable, or naming an
    archive that is gone) whose name sorts after it may be a newer snapshot: refused, never
    passed over silently for an older archive."""
    with progress.stage("locate", container):
        entries, broken = ref.open().listing(container)
    newer = [b for b in broken if not entries or _name(b.url) > _name(entries[0].url)]
    if newer:
        raise UnsupportedArchiveError(
            f"The newest snapshot of container {container!r} in {ref.url} cannot be used: {newer[0].url}: "
            f"{newer[0].problem}. ferry will not fall back to an older snapshot on its own: restore one by "
            f"its URL (`ferry ls {ref.url}` lists them), or repair or remove the broken one."
        )
    if not entries:
        raise ArchiveNotFoundError(
            f"There is no complete snapshot of container {container!r} in {ref.url}. "
            f"List what there is with `ferry ls {ref.url}`."
        )
    return entries[0].url


def _name(url: str) -> str:
    """An archive's file name, which starts with its UTC timestamp: names sort by time."""
    return url.rsplit("/", 1)[-1]


@task(name="locate", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient)
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

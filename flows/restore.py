"""Restore flow: [locate] -> download -> verify -> [load image] -> apply diff -> CRIU restore."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from ferry.staging import new_run_dir, remove_run_dir
from tasks.apply_diff import apply_diff_task
from tasks.download import download_task
from tasks.load_image import load_image_task
from tasks.locate import locate_task
from tasks.restore import Restored, restore_task
from tasks.verify import verify_task


@flow(name="ferry-restore", log_prints=True, persist_result=True)
def restore(
    archive: Annotated[str, Field(min_length=1)],
    name: str | None = None,
    latest: str | None = None,
    allow_unverified: bool = False,
    allow_unsigned: bool = False,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
) -> Restored:
    """Restore a container on this host from an archive.

    Args:
        archive: URL of the archive to restore; with `latest`, the URL of the store.
        name: New container name (default: the original name).
        latest: Restore the newest complete snapshot of this container from the store at `archive`.
        allow_unverified: Accept an archive without a ferry manifest (a Podman export); its paths are still checked.
        allow_unsigned: Accept an archive that is unsigned or signed by a key not in this host's keyring
            (FERRY_TRUSTED_KEYS). Anyone with write access to the store can write such an archive. Every
            other check still applies.
        storage_options: fsspec options for the store, e.g. an endpoint. No secrets: parameters are shown in the UI.
        storage_secret: Name of a Prefect Secret block holding a JSON object of storage credentials.
    """
    if latest:
        archive = locate_task(archive, latest, storage_options, storage_secret)
    staging = new_run_dir("restore", archive.rstrip("/").rsplit("/", 1)[-1])
    fetched = download_task(archive, staging, storage_options, storage_secret)
    verified = verify_task(fetched, allow_unverified, allow_unsigned)
    load_image_task(verified, storage_options, storage_secret)
    prepared = apply_diff_task(verified, name)
    restored = restore_task(prepared)
    remove_run_dir(staging)
    return restored

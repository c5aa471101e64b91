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


@flow(name="ferry-restore", log_prints=True)
def restore(
    archive: Annotated[
        str, Field(min_length=1, description="URL of the archive to restore, or of the store when 'latest' is set")
    ],
    name: Annotated[str | None, Field(description="New container name (default: the original name)")] = None,
    latest: Annotated[
        str | None, Field(description="Restore the newest complete snapshot of this container from the store URL")
    ] = None,
    allow_unverified: Annotated[
        bool,
        Field(description="Accept an archive without a ferry manifest (e.g. a Podman export); paths are still checked"),
    ] = False,
    storage_options: Annotated[dict[str, Any] | None, Field(description="fsspec options for the store")] = None,
    storage_secret: Annotated[
        str | None,
        Field(description="Name of a Prefect Secret block holding a JSON object of storage credentials"),
    ] = None,
) -> Restored:
    if latest:
        archive = locate_task(archive, latest, storage_options, storage_secret)
    staging = new_run_dir("restore", archive.rstrip("/").rsplit("/", 1)[-1])
    fetched = download_task(archive, staging, storage_options, storage_secret)
    verified = verify_task(fetched, allow_unverified)
    load_image_task(verified, storage_options, storage_secret)
    prepared = apply_diff_task(verified, name)
    restored = restore_task(prepared)
    remove_run_dir(staging)
    return restored

"""Restore flow: download -> verify -> apply diff -> CRIU restore."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from ferry.staging import new_run_dir, remove_run_dir
from tasks.apply_diff import apply_diff_task
from tasks.download import download_task
from tasks.restore import Restored, restore_task
from tasks.verify import verify_task


@flow(name="ferry-restore", log_prints=True)
def restore(
    archive: Annotated[str, Field(min_length=1, description="URL of the archive to restore")],
    name: Annotated[str | None, Field(description="New container name (default: the original name)")] = None,
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
    staging = new_run_dir("restore", archive.rstrip("/").rsplit("/", 1)[-1])
    fetched = download_task(archive, staging, storage_options, storage_secret)
    verified = verify_task(fetched, allow_unverified)
    prepared = apply_diff_task(verified, name)
    restored = restore_task(prepared)
    remove_run_dir(staging)
    return restored

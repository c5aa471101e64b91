"""Runs on the source host for a migration: remove the container once it runs on the target,
or restore it here when the migration failed after the dump."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow
from pydantic import Field

from tasks.source import remove_here_task, restore_here_task


@flow(name="ferry-source", log_prints=True)
def source(
    container: Annotated[str, Field(min_length=1, description="The migrated container, on this host")],
    action: Annotated[Literal["rollback", "remove"], Field(description="rollback: run it here again; remove")],
) -> str:
    if action == "rollback":
        return restore_here_task(container)
    remove_here_task(container)
    return "removed"

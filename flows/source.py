"""Runs on the source host for a migration: remove the container once it runs on the target,
or restore it here when the migration failed after the dump."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow
from pydantic import Field

from tasks.source import remove_here_task, restore_here_task

SOURCE_TIMEOUT_S = 3600


@flow(name="ferry-source", log_prints=True, timeout_seconds=SOURCE_TIMEOUT_S)
def source(
    container: Annotated[str, Field(min_length=1)],
    action: Literal["rollback", "remove"],
) -> str:
    """The migration's last step on the source host.

    Args:
        container: The migrated container, on this host.
        action: rollback: restore it here from its local checkpoint; remove: delete it (it runs on the target now).
    """
    if action == "rollback":
        return restore_here_task(container)
    remove_here_task(container)
    return "removed"

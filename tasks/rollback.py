"""Rollback: bring a container that a stop-mode dump stopped back to life on this host.

Runs when anything after the dump fails. Podman kept the checkpoint next to the container
(``--keep``), so this needs neither the archive nor the store.
"""

from __future__ import annotations

from prefect import task

from ferry.errors import FerryError, RestoreError
from ferry.runtime import ContainerInfo, Podman


def rollback(info: ContainerInfo, failure: FerryError | Exception, runtime: Podman | None = None) -> None:
    """Restore the container locally and note it on ``failure`` (which the caller re-raises)."""
    runtime = runtime or Podman()
    try:
        runtime.restore_local(info.id)
    except FerryError as exc:
        raise RestoreError(
            f"The snapshot of {info.name!r} failed ({failure}) and restoring the container on "
            f"this host failed too. Its checkpoint is kept by Podman: run `podman container "
            f"restore --keep {info.name}` once the cause is fixed."
        ) from exc
    failure.add_note(
        f"The container {info.name!r} was stopped by the dump and has been restored on this "
        "host from its local checkpoint; it is running again."
    )


@task(name="rollback", retries=1, retry_delay_seconds=3)
def rollback_task(info: ContainerInfo, failure: Exception) -> None:
    rollback(info, failure)

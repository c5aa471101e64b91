"""Rollback: bring a container that a stop-mode dump stopped back to life on this host.

Runs when anything after the dump fails. Podman kept the checkpoint next to the container
(``--keep``), so this needs neither the archive nor the store.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ferry.errors import FerryError, RestoreError
from ferry.resume import bump_generation, clear_inflight
from ferry.runtime import ContainerInfo, Runtime, current


def rollback(
    info: ContainerInfo, failure: FerryError | Exception, staging: Path | None = None, runtime: Runtime | None = None
) -> None:
    """Restore the container locally and note it on ``failure`` (which the caller re-raises).

    Also invalidates the run's dump: a retry of this run must take a fresh one, since the
    container has been running again since."""
    runtime = runtime or current()
    if staging is not None:
        bump_generation(staging)
    now = runtime.inspect(info.id)
    if now.state == "running":
        clear_inflight(info.id)
        return  # the dump failed before stopping it: nothing to bring back
    try:
        runtime.restore_local(info.id)
        clear_inflight(info.id)
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


@task(name="rollback", retries=1, retry_delay_seconds=3, cache_policy=NO_CACHE)
def rollback_task(info: ContainerInfo, failure: Exception, staging: Path | None = None) -> None:
    rollback(info, failure, staging)

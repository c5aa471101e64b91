"""Migration's last word on the source host: remove the migrated container, or bring it back."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from ferry.runtime import Runtime, current


def restore_here(container: str, runtime: Runtime | None = None) -> str:
    """Restore from the checkpoint Podman kept next to the container (stop-mode dump)."""
    runtime = runtime or current()
    info = runtime.inspect(container)
    if info.state != "running":
        runtime.restore_local(info.id)
    return runtime.inspect(container).state


def remove_here(container: str, runtime: Runtime | None = None) -> None:
    runtime = runtime or current()
    if runtime.exists(container):
        runtime.remove(container)


@task(name="restore-on-source", retries=1, retry_delay_seconds=3, cache_policy=NO_CACHE)
def restore_here_task(container: str) -> str:
    return restore_here(container)


@task(name="remove-from-source", retries=1, retry_delay_seconds=3, cache_policy=NO_CACHE)
def remove_here_task(container: str) -> None:
    remove_here(container)

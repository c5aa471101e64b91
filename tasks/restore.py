"""Stage 8, restore: CRIU restore through ``podman container restore --import``.

Not retried: a restore that got as far as creating the container must not be repeated blindly.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from ferry.faults import maybe_fail
from ferry.runtime import CheckpointStats, Podman
from tasks.apply_diff import Prepared


@dataclass(frozen=True)
class Restored:
    name: str
    id: str
    state: str
    stats: CheckpointStats


def restore(prepared: Prepared, runtime: Podman | None = None) -> Restored:
    maybe_fail("restore")
    runtime = runtime or Podman()
    container_id, stats = runtime.restore_import(prepared.path, name=prepared.name)
    info = runtime.inspect(container_id or prepared.name or prepared.report.name)
    return Restored(info.name, info.id, info.state, stats)


@task(name="restore", retries=0, persist_result=True)
def restore_task(prepared: Prepared) -> Restored:
    return restore(prepared)

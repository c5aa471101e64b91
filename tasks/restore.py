"""Restore: CRIU restore through ``podman container restore --import``.

Not retried: a restore that got as far as creating the container must not be repeated blindly.
A restore that fails or overruns its timeout leaves no container and no process behind
(:meth:`ferry.runtime.Podman.restore_import` removes them before raising).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from ferry import progress
from ferry.archive.criu_config import write_criu_config
from ferry.faults import maybe_fail
from ferry.options import DEFAULT_RESTORE_TIMEOUT_S
from ferry.runtime import CheckpointStats, Runtime, current
from tasks.prepare_import import Prepared


@dataclass(frozen=True)
class Restored:
    name: str
    id: str
    state: str
    stats: CheckpointStats


def restore(prepared: Prepared, runtime: Runtime | None = None, timeout: float = DEFAULT_RESTORE_TIMEOUT_S) -> Restored:
    maybe_fail("restore")
    runtime = runtime or current()
    if prepared.criu_config is not None:
        write_criu_config(prepared.criu_config, tcp_close=prepared.options.tcp_close)
    with progress.stage("restore", prepared.name or prepared.report.name):
        container_id, stats = runtime.restore_import(
            prepared.path,
            name=prepared.name,
            options=prepared.options,
            timeout=timeout,
            target=prepared.name or prepared.report.name,
        )
    info = runtime.inspect(container_id or prepared.name or prepared.report.name)
    return Restored(info.name, info.id, info.state, stats)


@task(name="restore", retries=0, persist_result=True)
def restore_task(prepared: Prepared, timeout: float = DEFAULT_RESTORE_TIMEOUT_S) -> Restored:
    return restore(prepared, timeout=timeout)

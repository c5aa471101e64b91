"""Dump: CRIU checkpoint of the (frozen) container through Podman.

Writes Podman's own export layout, uncompressed and without the rootfs (ferry takes the diff
itself, once, in the same frozen instant). Never retried blindly: a second dump of a stopped
container would fail, and of a running one would be a different snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prefect import task

from ferry import progress
from ferry.faults import maybe_fail
from ferry.options import DumpOptions
from ferry.resume import mark_dumped, mark_inflight
from ferry.runtime import CheckpointStats, ContainerInfo, Runtime, current
from ferry.staging import utcnow


@dataclass(frozen=True)
class DumpResult:
    export: Path
    leave_running: bool
    stats: CheckpointStats
    started: str
    finished: str
    options: DumpOptions = field(default_factory=DumpOptions)


def dump(
    info: ContainerInfo,
    staging: Path,
    leave_running: bool,
    runtime: Runtime | None = None,
    options: DumpOptions | None = None,
) -> DumpResult:
    maybe_fail("dump")
    runtime = runtime or current()
    options = options or DumpOptions()
    if not leave_running:
        mark_inflight(info.id)
    started = utcnow()
    with progress.stage("dump", info.name):
        stats = runtime.checkpoint(info, staging / "dump.tar", leave_running=leave_running, options=options)
    return DumpResult(staging / "dump.tar", leave_running, stats, started, utcnow(), options)


@task(name="dump", retries=0, persist_result=True)
def dump_task(
    info: ContainerInfo,
    staging: Path,
    leave_running: bool,
    generation: int = 0,
    options: DumpOptions | None = None,
) -> DumpResult:
    result = dump(info, staging, leave_running, options=options)
    mark_dumped(staging, generation)
    return result

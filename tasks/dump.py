"""Stage 1b, dump: CRIU checkpoint of the (frozen) container through Podman.

Writes Podman's own export layout, uncompressed and without the rootfs (ferry takes the diff
itself, once, in the same frozen instant). Never retried blindly: a second dump of a stopped
container would fail, and of a running one would be a different snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task

from ferry.runtime import CheckpointStats, ContainerInfo, Podman
from ferry.staging import utcnow


@dataclass(frozen=True)
class DumpResult:
    export: Path
    leave_running: bool
    stats: CheckpointStats
    started: str
    finished: str


def dump(info: ContainerInfo, staging: Path, leave_running: bool, runtime: Podman | None = None) -> DumpResult:
    runtime = runtime or Podman()
    started = utcnow()
    stats = runtime.checkpoint(info, staging / "dump.tar", leave_running=leave_running)
    return DumpResult(staging / "dump.tar", leave_running, stats, started, utcnow())


@task(name="dump", retries=0)
def dump_task(info: ContainerInfo, staging: Path, leave_running: bool) -> DumpResult:
    return dump(info, staging, leave_running)

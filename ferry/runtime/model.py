"""What the container runtime reports: a container, its mounts, its file-system changes and the
statistics of a checkpoint or restore."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mount:
    """One entry of ``podman inspect``'s Mounts: a named volume or a bind-mounted host path."""

    type: str  # "volume" or "bind"
    source: str
    destination: str
    name: str = ""  # the volume's name


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    state: str
    pid: int
    image_id: str
    image_name: str
    static_dir: str
    checkpointed: bool = False
    mounts: tuple[Mount, ...] = ()

    @property
    def bind_mounts(self) -> tuple[Mount, ...]:
        return tuple(m for m in self.mounts if m.type == "bind")


@dataclass(frozen=True)
class Changes:
    """``podman container diff``: paths are container-absolute."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointStats:
    frozen_us: int = 0
    runtime_us: int = 0
    total_us: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


def stats_of(stdout: str, runtime_key: str, total_key: str) -> CheckpointStats:
    try:
        raw = json.loads(stdout)
    except json.JSONDecodeError:
        return CheckpointStats()
    ctrs = raw.get("container_statistics") or [{}]
    criu = ctrs[0].get("criu_statistics") or {}
    return CheckpointStats(
        frozen_us=int(criu.get("frozen_time", 0)),
        runtime_us=int(ctrs[0].get(runtime_key, 0)),
        total_us=int(raw.get(total_key, 0)),
        raw=raw,
    )

"""Freeze and thaw a container's processes through its cgroup (v1 freezer.state or v2
cgroup.freeze), without telling Podman."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from ferry.errors import ContainerStateError
from ferry.runtime.model import ContainerInfo

CGROUP_ROOT = Path("/sys/fs/cgroup")


def freezer(info: ContainerInfo) -> Path:
    """The cgroup file that freezes the container (v1 freezer.state or v2 cgroup.freeze)."""
    try:
        lines = Path(f"/proc/{info.pid}/cgroup").read_text().splitlines()
    except OSError as exc:
        raise ContainerStateError(
            f"Container {info.name!r} has no running process to freeze (state {info.state})."
        ) from exc
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            return CGROUP_ROOT / "freezer" / path.lstrip("/") / "freezer.state"
    for line in lines:
        if line.startswith("0::"):
            return CGROUP_ROOT / line[3:].lstrip("/") / "cgroup.freeze"
    raise ContainerStateError(f"Cannot find the freezer cgroup of container {info.name!r}.")


def freeze(info: ContainerInfo, timeout: float = 30) -> Path:
    """Freeze every process of the container without telling Podman (which would then
    refuse to checkpoint a 'paused' container). CRIU accepts a frozen cgroup and keeps it
    frozen, so the root file-system and the memory are captured at the same instant."""
    knob = freezer(info)
    v1 = knob.name == "freezer.state"
    knob.write_text("FROZEN" if v1 else "1")
    deadline = time.monotonic() + timeout
    while not _is_frozen(knob):
        if time.monotonic() > deadline:
            thaw(knob)
            raise ContainerStateError(f"Container {info.name!r} did not freeze within {timeout} s.")
        time.sleep(0.005)
    return knob


def thaw(knob: Path) -> None:
    """Thaw a cgroup frozen by :func:`freeze`; a cgroup gone (container stopped) is fine."""
    with contextlib.suppress(FileNotFoundError):
        knob.write_text("THAWED" if knob.name == "freezer.state" else "0")


def _is_frozen(knob: Path) -> bool:
    if knob.name == "freezer.state":
        return knob.read_text().strip() == "FROZEN"
    return "frozen 1" in (knob.parent / "cgroup.events").read_text()

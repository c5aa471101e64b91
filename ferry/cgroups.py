"""Find a container's cgroups by its id and kill every process in them.

Used after a failed or timed-out restore: a CRIU that hangs or dies half-way can leave restored
processes running in the container's cgroup with no Podman container to own them. The cgroup
is named after the full container id (``libpod-<id>`` with the cgroupfs manager,
``libpod-<id>.scope`` with systemd), in every hierarchy (cgroup v1) or in the unified one (v2).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_ID = re.compile(r"[0-9a-f]{64}")


def container_cgroups(container_id: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Every cgroup directory of this container, in every hierarchy."""
    if not _ID.fullmatch(container_id):
        return []
    names = {f"libpod-{container_id}", f"libpod-{container_id}.scope"}
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            if name in names:
                found.append(Path(dirpath) / name)
        # Below a container's own cgroup there is nothing more of interest.
        dirnames[:] = [d for d in dirnames if d not in names]
    return found


def pids(cgroups: list[Path]) -> set[int]:
    out: set[int] = set()
    for cg in cgroups:
        for procs in (cg / "cgroup.procs", *cg.glob("*/cgroup.procs")):
            with contextlib.suppress(OSError, ValueError):
                out.update(int(line) for line in procs.read_text().split())
    return out


def kill_all(cgroups: list[Path], timeout: float = 30) -> set[int]:
    """SIGKILL every process in these cgroups until none is left; returns the pids killed.

    A frozen cgroup is thawed first (a killed process that is frozen never dies), and the
    listing is repeated, since a process may fork between reading the list and the kill."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        _thaw(cgroups)
        found = pids(cgroups)
        if not found:
            return killed
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed |= found
        if time.monotonic() > deadline:
            return killed
        time.sleep(0.05)


def processes_naming(container_id: str) -> set[int]:
    """Processes whose command line holds the full container id (its conmon, runc, criu)."""
    if not _ID.fullmatch(container_id):
        return set()
    needle = container_id.encode()
    out: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                out.add(int(entry.name))
    return out


def _thaw(cgroups: list[Path]) -> None:
    for cg in cgroups:
        for knob, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            with contextlib.suppress(OSError):
                if (cg / knob).exists():
                    (cg / knob).write_text(value)

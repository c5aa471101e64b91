"""One snapshot of a container at a time, and a trace of the ones that were interrupted.

The lock is an ``flock`` on a file under the staging root: the kernel drops it when the process
dies, even by kill -9, so a crashed run never blocks the next. The "in flight" marker is a plain
file written before a stop-mode dump and removed once the archive is stored or the container is
back: when a run finds it for a container that is stopped and checkpointed, the previous run died
between the dump and the upload, and the container is brought back before anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ferry.errors import ContainerStateError
from ferry.staging import staging_root


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:128] or "container"


def _dir(kind: str) -> Path:
    path = staging_root() / kind
    path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


@contextlib.contextmanager
def container_lock(container: str) -> Iterator[None]:
    path = _dir("locks") / f"{_safe(container)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = path.read_text().strip() or "?"
            raise ContainerStateError(
                f"Another ferry run (pid {holder}) is checkpointing container {container!r} right now. Wait for "
                "it to finish; two snapshots of one container are never taken at once."
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)


def mark_inflight(container_id: str) -> None:
    (_dir("inflight") / _safe(container_id)).write_text(str(os.getpid()))


def clear_inflight(container_id: str) -> None:
    (_dir("inflight") / _safe(container_id)).unlink(missing_ok=True)


def is_inflight(container_id: str) -> bool:
    return (_dir("inflight") / _safe(container_id)).exists()

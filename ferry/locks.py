"""One snapshot of a container at a time.

The lock is an ``flock`` on a file under the staging root: the kernel drops it when the process
dies, even by kill -9, so a crashed run never blocks the next. (The trace of interrupted runs,
the in-flight marker, is in :mod:`ferry.resume`.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from ferry.errors import ContainerStateError
from ferry.names import file_name
from ferry.staging import staging_root


@contextlib.contextmanager
def container_lock(container: str) -> Iterator[None]:
    folder = staging_root() / "locks"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    path = folder / f"{file_name(container, limit=128, fallback='container')}.lock"
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

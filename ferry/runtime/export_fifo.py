"""Reading ``podman container checkpoint --export`` as it is written, through a FIFO.

Podman 4.3 writes its export with ``os.Create`` and ``io.Copy`` (no seek, no stat), after CRIU's
dump, the /dev/shm tar, network.status and the named volumes' tars are complete
(libpod/container_internal_common.go ``checkpoint()`` and ``exportCheckpoint()``). So its
export path can be a FIFO that ferry reads while Podman writes: nothing is written to disk and
read back.

What can go wrong, and what is left afterwards:

* Podman fails before it opens the FIFO (CRIU refused, the container is gone): :meth:`open`
  sees it exit and raises its error; the FIFO was never opened by anyone.
* Podman dies mid-export: the reader gets an early end of file; :meth:`finish` raises Podman's
  error (its exit status, what it printed, CRIU's log).
* The reader gives up: :meth:`abandon` reads the rest of the export into nothing, so Podman
  finishes as it would have (in stop mode that leaves the container checkpointed, which the
  rollback restores from). Closing the read end would not stop Podman: ``os.Create`` opens the
  FIFO read-write, so Podman is a reader itself, never gets EPIPE, and would block for ever on
  a full pipe. A Podman that neither writes nor exits for ``GIVE_UP_WAIT_S`` is killed.

:func:`ferry.runtime.podman.Podman.checkpoint_stream` removes the FIFO in every case.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import time
from collections.abc import Callable
from pathlib import Path

from ferry.errors import CheckpointError
from ferry.runtime.model import CheckpointStats
from ferry.runtime.process import Completed, Started

#: How long a Podman whose export is being abandoned may go without writing or exiting.
GIVE_UP_WAIT_S = 60
#: How long Podman may take to exit once its export ended (it only saves its state and prints stats).
EXIT_WAIT_S = 300


class PodmanExport:
    """The read end of the FIFO Podman exports into, and the Podman process writing it."""

    def __init__(
        self,
        proc: Started,
        fifo: Path,
        *,
        what: str,
        failed: Callable[[Completed, str], CheckpointError],
        stats: Callable[[str], CheckpointStats],
        folder: Path | None = None,
    ) -> None:
        self.proc = proc
        self.fifo = fifo
        self.what = what
        self._failed = failed  # builds the error for a failed or timed-out Podman
        self._stats = stats
        self._folder = folder  # the container's directory Podman exports from
        self._fd = -1
        self._connected = False  # Podman opened the FIFO
        self.finished = False

    def open(self, timeout: float) -> None:
        """Wait until Podman opened the FIFO to write its export (CRIU's dump is done by then).

        Opened non-blocking, then polled: a FIFO's reader sees POLLIN or POLLHUP only once a
        writer has opened it, and meanwhile Podman's exit is noticed instead of blocking forever
        in ``open``."""
        fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._fd = fd
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while not poller.poll(100):
            if self.proc.poll() is not None:
                if poller.poll(0):
                    break  # it wrote everything and exited between two polls
                raise self._failed(self.proc.wait(0), "")
            if time.monotonic() > deadline:
                raise self._failed(self.proc.wait(0), f"podman did not start its export within {timeout:g} s")
        os.set_blocking(fd, True)
        self._connected = True

    def size_hint(self) -> int:
        """About how many bytes the export holds (for progress): the files of the container's
        directory, which Podman exports most of, once CRIU's images are written there."""
        total = 0
        if self._folder is None:
            return 0
        for root, _, files in os.walk(self._folder):
            for name in files:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(root, name))  # noqa: PTH118 - walking str paths
                    if stat.S_ISREG(st.st_mode):
                        total += st.st_size
        return total

    def read(self, size: int = -1, /) -> bytes:
        if self._fd < 0:
            raise ValueError("the export is closed")
        return os.read(self._fd, size if size > 0 else 1 << 20)

    def readinto(self, buffer: memoryview | bytearray) -> int:
        if self._fd < 0:
            raise ValueError("the export is closed")
        return os.readv(self._fd, [buffer])

    def finish(self) -> CheckpointStats:
        """Wait for Podman to exit after its export ended; raise its error if it failed."""
        done = self.proc.wait(EXIT_WAIT_S)
        self.finished = True
        self.close()
        if done.timed_out or done.returncode != 0:
            raise self._failed(done, "")
        return self._stats(done.stdout)

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def abandon(self) -> None:
        """The reader gives up: let Podman finish into nothing, then make sure it is gone."""
        if self.finished:
            self.close()
            return
        if self._fd >= 0 and self._connected:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN | select.POLLHUP)
            with contextlib.suppress(OSError):
                while poller.poll(GIVE_UP_WAIT_S * 1000) and os.read(self._fd, 1 << 20):
                    pass
        self.close()
        self.proc.wait(GIVE_UP_WAIT_S)  # kills it if it does not exit by itself
        self.finished = True

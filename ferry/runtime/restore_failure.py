"""What a failed ``podman container restore --import`` leaves, and what to say about it: the
containers it created (watched while it runs, since Podman may forget them before it fails),
CRIU's log excerpt and hints for the operator."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ferry import cgroups
from ferry.errors import RuntimeCommandError
from ferry.runtime.process import LOG_TAIL_LINES

IDS_IN_PATH = re.compile(r"/([0-9a-f]{64})/")
LOG_READ_LIMIT = 4 << 20


def read_log(path: str) -> str:
    try:
        with Path(path).open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_READ_LIMIT))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def log_excerpt(text: str) -> str:
    """CRIU's first error lines (the cause is usually the first), then the log's last lines."""
    lines = text.splitlines()
    last = lines[-LOG_TAIL_LINES:]
    errors = [line for line in lines if "Error (" in line and line not in last][:8]
    return "\n".join([*errors, *(["..."] if errors else []), *last])


def restore_hints(text: str) -> list[str]:
    hints = []
    if "Connected TCP socket in image" in text:
        hints.append(
            "The archive holds established TCP connections and this restore asked neither to keep them nor to "
            "close them: restore with --tcp-close (ferry restore's default) or --tcp-established."
        )
    if "volume with name" in text and "already exists" in text:
        hints.append(
            "A named volume of the archive already exists on this host; Podman restores volumes only into new "
            "ones. Remove it (`podman volume rm NAME`) or restore on another host."
        )
    return hints


class NewContainers:
    """Watches a store's container directories while a command runs, to learn which containers it
    created even if it removes (forgets) them again before it fails."""

    def __init__(self, dirs: list[Path], interval: float = 0.1) -> None:
        self._dirs = dirs
        self._interval = interval
        self.before: set[str] = set()
        self.new: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _list(self) -> set[str]:
        found: set[str] = set()
        for d in self._dirs:
            with contextlib.suppress(OSError):
                found.update(p.name for p in d.iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name))
        return found

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self.new |= self._list() - self.before

    def __enter__(self) -> NewContainers:
        self.before = self._list()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.new |= self._list() - self.before


def clean(container_ids: set[str], target: str, *, gone: Callable[[str], bool], remove: Callable[[str], None]) -> str:
    """Kill every process of these (just created) containers and remove them; say what was done."""
    killed: set[int] = set()
    for cid in sorted(container_ids):
        killed |= cgroups.kill_all(cgroups.container_cgroups(cid))
        # Its conmon and runc end once CRIU is gone; if they do not, they go too.
        deadline = time.monotonic() + 10
        while (left := cgroups.processes_naming(cid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed |= left
    removed: list[str] = []
    problems: list[str] = []
    for ref in [*([target] if target else []), *sorted(container_ids)]:
        for _ in range(3):
            if gone(ref):
                break
            with contextlib.suppress(RuntimeCommandError):
                remove(ref)
            if gone(ref):
                removed.append(repr(ref) if ref == target else f"id {ref[:12]}")
                break
            time.sleep(1)
        else:
            problems.append(ref)
    if problems:
        return (
            f"ferry could not remove what the failed restore left: {', '.join(problems)}; remove it with "
            f"`podman rm -f {' '.join(problems)}`."
        )
    done = []
    if removed:
        done.append(f"removed the container it had created ({', '.join(removed)})")
    if killed:
        done.append(f"killed {len(killed)} process(es) it had left running")
    if not done:
        return "It left no container and no process behind."
    return "ferry " + " and ".join(done) + ": nothing of it is left on this host."

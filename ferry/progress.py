"""Progress of the long stages, for whoever watches.

Tasks report through :func:`stage`: a stage starts, advances by bytes (when it streams them)
and finishes. What listens is a :class:`Sink`: the ``ferry`` command installs one that draws
on the terminal (``ferry/cli/terminal.py``); in a Prefect worker's run none is installed and only
the run's progress artifacts (:class:`ferry.report.Progress`) are updated, as before.

Names in a stage's detail may come from a store or an archive (hostile input): a sink prints
them only through :func:`printable`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ferry import humanize
from ferry.archive.streams import CountingReader, Readable
from ferry.report import Progress

#: A sink hears of a stage's bytes at most this often (a chunk callback may fire every 16 KiB).
NOTIFY_INTERVAL_S = 0.1


class Sink(Protocol):
    def started(self, stage: Stage) -> None: ...

    def advanced(self, stage: Stage) -> None: ...

    def finished(self, stage: Stage, error: BaseException | None) -> None: ...


@dataclass
class Stage:
    """One stage as it runs. ``total`` is None when the number of bytes is not known ahead;
    ``streams`` says whether the stage counts bytes at all."""

    name: str
    detail: str = ""
    total: int | None = None
    streams: bool = False
    done: int = 0
    note: str = ""  # said at the end, e.g. how much was stored
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    _sink: Sink | None = None
    _artifact: Progress | None = None
    _notified: float = 0.0

    def __post_init__(self) -> None:
        self.streams = self.streams or self.total is not None

    @property
    def seconds(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if self._artifact is not None:
            self._artifact.advance(nbytes)
        if self._sink is not None:
            now = time.monotonic()
            if now - self._notified >= NOTIFY_INTERVAL_S:
                self._notified = now
                self._sink.advanced(self)

    def reader(self, source: Readable) -> CountingReader:
        """``source``, counting what is read from it into this stage."""
        return CountingReader(source, self.advance)


_lock = threading.Lock()
_sink: Sink | None = None


def install(sink: Sink | None) -> Sink | None:
    """Make ``sink`` hear every stage from now on (None: nobody); returns the one it replaces."""
    global _sink
    with _lock:
        previous, _sink = _sink, sink
    return previous


@contextlib.contextmanager
def stage(
    name: str, detail: str = "", *, total: int | None = None, streams: bool = False, artifact: str = ""
) -> Iterator[Stage]:
    """Report one stage. ``streams``: it counts bytes (``total`` when known ahead);
    ``artifact``: the description of a Prefect progress artifact for the transfer."""
    sink = _sink
    current = Stage(name, detail, total, streams, _sink=sink)
    if artifact:
        current._artifact = Progress(total or 0, artifact)
    if sink is not None:
        sink.started(current)
    try:
        yield current
    except BaseException as exc:
        current.ended_at = time.monotonic()
        if sink is not None:
            sink.finished(current, exc)
        raise
    current.ended_at = time.monotonic()
    if current._artifact is not None:
        current._artifact.finish()
    if sink is not None:
        sink.finished(current, None)


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for a terminal: control characters (C0, C1, DEL), format characters (bidi
    overrides) and every other unprintable character escaped, ``\\x1b`` style; cut at ``limit``."""
    out = []
    for ch in text[:limit]:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out) + ("..." if len(text) > limit else "")


def human_bytes(n: float) -> str:
    return humanize.size(round(n))


def human_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    minutes, secs = divmod(int(s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def summary(stage: Stage, error: BaseException | None = None) -> str:
    """The line that closes a stage: "dump 2.1 s", "download 123.4 MiB 1.2 s 98.0 MiB/s"."""
    secs = stage.seconds
    if error is not None:
        return f"{stage.name} failed after {human_seconds(secs)}"
    parts = [stage.name]
    if stage.streams:
        parts.append(human_bytes(stage.done))
    parts.append(human_seconds(secs))
    if stage.streams and secs > 0:
        parts.append(f"{human_bytes(stage.done / secs)}/s")
    line = " ".join(parts)
    return f"{line} ({printable(stage.note)})" if stage.note else line

"""Progress on the terminal: the sink the ``ferry`` command installs (``--quiet`` installs none).

Everything goes to stderr; stdout keeps only a command's result (a URL, JSON). On a terminal,
one line per running stage updates in place (rich: bytes, rate and ETA when the total is known,
elapsed time otherwise) and each finished stage leaves one line ("dump 2.1 s"). When stderr is
not a terminal (a pipe, a log file), each stage writes a plain line when it starts and when it
ends, without control characters.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import IO, Any

from ferry import progress
from ferry.progress import Stage, human_bytes, human_seconds, printable, summary


def install(args: argparse.Namespace, stream: IO[str] | None = None) -> progress.Sink | None:
    """The sink for this command: none with ``--quiet``."""
    if getattr(args, "quiet", False):
        progress.install(None)
        return None
    sink = for_stream(stream or sys.stderr)
    progress.install(sink)
    return sink


def for_stream(stream: IO[str]) -> progress.Sink:
    interactive = _isatty(stream) and os.environ.get("TERM", "") != "dumb"
    return LiveLines(stream) if interactive else PlainLines(stream)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _label(stage: Stage) -> str:
    return f"{stage.name} {printable(stage.detail, 80)}" if stage.detail else stage.name


class PlainLines:
    """One line when a stage starts, one when it ends; nothing in between."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def started(self, stage: Stage) -> None:
        size = f", {human_bytes(stage.total)}" if stage.total is not None else ""
        detail = f": {printable(stage.detail)}" if stage.detail else ""
        self._line(f"{stage.name} started{detail}{size}")

    def advanced(self, stage: Stage) -> None:
        pass

    def finished(self, stage: Stage, error: BaseException | None) -> None:
        self._line(summary(stage, error))


class LiveLines:
    """A rich live display on the terminal, running while a stage is; finished stages print
    their line above it. ferry's own log lines written meanwhile go above it too."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._tasks: dict[int, Any] = {}
        self._progress: Any = None
        self._swapped: list[logging.StreamHandler[Any]] = []

    def _start(self) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
        from rich.table import Column
        from rich.text import Text

        class Figures(ProgressColumn):
            """Bytes done (of the total), rate and ETA; elapsed time for a stage counting no bytes."""

            def render(self, task: Task) -> Text:
                return Text(_figures(task.fields["stage"], task.speed, task.time_remaining))

        console = Console(file=self._stream, highlight=False, markup=False, emoji=False)
        live = Progress(
            TextColumn("{task.description}", markup=False, table_column=Column(no_wrap=True, max_width=40)),
            BarColumn(bar_width=20),
            Figures(table_column=Column(no_wrap=True)),
            console=console,
            transient=True,
            redirect_stdout=False,  # stdout is the command's result, never progress
            redirect_stderr=False,
            speed_estimate_period=5.0,
        )
        live.start()
        self._route_logs(console)
        return live

    def _route_logs(self, console: Any) -> None:
        # ferry's warnings (e.g. an unsigned archive) would otherwise land in the middle of the
        # live line: while it runs, the handlers writing to this terminal print above it.
        proxy = _ConsoleWriter(console)
        for logger in (logging.getLogger("ferry"), logging.getLogger()):
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream:
                    handler.setStream(proxy)
                    self._swapped.append(handler)

    def _stop(self) -> None:
        for handler in self._swapped:
            handler.setStream(self._stream)
        self._swapped.clear()
        self._progress.stop()
        self._progress = None

    def started(self, stage: Stage) -> None:
        with self._lock:
            if self._progress is None:
                self._progress = self._start()
            self._tasks[id(stage)] = self._progress.add_task(
                _label(stage), total=stage.total, completed=stage.done, stage=stage
            )

    def advanced(self, stage: Stage) -> None:
        with self._lock:
            task = self._tasks.get(id(stage))
            if task is not None and self._progress is not None:
                self._progress.update(task, completed=stage.done, total=stage.total)

    def finished(self, stage: Stage, error: BaseException | None) -> None:
        with self._lock:
            task = self._tasks.pop(id(stage), None)
            if self._progress is None:
                return
            from rich.text import Text

            if task is not None:
                self._progress.remove_task(task)
            self._progress.console.print(Text(summary(stage, error)))
            if not self._tasks:
                self._stop()


class _ConsoleWriter:
    """A text stream that prints whole lines through a rich console (above its live display)."""

    def __init__(self, console: Any) -> None:
        self._console = console
        self._buffer = ""

    def write(self, text: str) -> int:
        from rich.text import Text

        self._buffer += text
        *lines, self._buffer = self._buffer.split("\n")
        for line in lines:
            self._console.print(Text(printable(line, 2000)))
        return len(text)

    def flush(self) -> None:
        pass


def _figures(stage: Stage, speed: float | None, remaining: float | None) -> str:
    if not stage.streams:
        return human_seconds(stage.seconds)
    done = human_bytes(stage.done)
    parts = [f"{done}/{human_bytes(stage.total)}" if stage.total is not None else done]
    if speed:
        parts.append(f"{human_bytes(speed)}/s")
    if stage.total is not None and remaining is not None and speed:
        minutes, secs = divmod(int(remaining), 60)
        parts.append(f"ETA {minutes}:{secs:02d}")
    else:
        parts.append(human_seconds(stage.seconds))
    return " ".join(parts)

"""The one place ferry starts a subprocess: an argv list (never a shell), a timeout, captured text.

Callers translate what came back into :mod:`ferry.errors`; a program that is not installed is
already a :class:`ProgramNotFoundError` here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.errors import RuntimeCommandError

LOG_TAIL_LINES = 25


class ProgramNotFoundError(RuntimeCommandError, FileNotFoundError):
    """The program to run is not installed or not on PATH."""


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def run(
    argv: list[str], *, timeout: float | None, what: str, install: str = "", own_session: bool = False
) -> Completed:
    """Run ``argv`` to completion or until ``timeout`` seconds pass (then it is killed: with
    ``own_session``, its whole session, so children it started go too). Never raises for a
    non-zero exit status or a timeout; raises :class:`ProgramNotFoundError` (naming ``what`` and
    how to ``install`` the program) when ``argv[0]`` cannot be started."""
    proc = _captured(argv, what, install, own_session)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return Completed(argv, proc.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
        _kill(proc, own_session)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a daemonised child still holds the pipes
            proc.kill()
            stdout, stderr = "", ""
        return Completed(argv, proc.returncode or -9, stdout or "", stderr or "", timed_out=True)
    except BaseException:  # interrupted: do not leave it running (as subprocess.run does)
        _kill(proc, own_session)
        proc.wait()
        raise


class Started:
    """A subprocess running in the background (see :func:`start`): its output is collected by a
    thread, so a chatty program never blocks on a full pipe while the caller does other work."""

    def __init__(self, proc: subprocess.Popen[str], argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv
        self._out = ("", "")
        self._collector = threading.Thread(target=self._collect, name=f"output of {argv[0]}", daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        out, err = self.proc.communicate()
        self._out = (out or "", err or "")

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        _kill(self.proc, False)

    def wait(self, timeout: float | None) -> Completed:
        """Wait until it exits; after ``timeout`` seconds it is killed (``timed_out`` set)."""
        self._collector.join(timeout)
        if self._collector.is_alive():
            self.kill()
            self._collector.join(10)
            return Completed(self.argv, self.proc.returncode or -9, *self._out, timed_out=True)
        return Completed(self.argv, self.proc.returncode, *self._out)


def start(argv: list[str], *, what: str, install: str = "") -> Started:
    """Start ``argv`` (stdin from /dev/null, stdout and stderr captured) and return at once; the
    caller must :meth:`Started.wait` for it. Raises :class:`ProgramNotFoundError` as :func:`run`."""
    return Started(_captured(argv, what, install, False), argv)


def _captured(argv: list[str], what: str, install: str, own_session: bool) -> subprocess.Popen[str]:
    """``argv`` started with stdin from /dev/null and its output in pipes (text)."""
    return _popen(
        argv,
        what,
        install,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=own_session,
    )


def _popen(argv: list[str], what: str, install: str, **kwargs: Any) -> subprocess.Popen[Any]:
    """The one place a subprocess is started: a missing program is a :class:`ProgramNotFoundError`
    naming what it was for and how to install it."""
    try:
        return subprocess.Popen(argv, **kwargs)
    except FileNotFoundError as exc:
        raise ProgramNotFoundError(
            f"Cannot {what}: {argv[0]!r} is not installed or not on PATH.{' ' + install if install else ''}",
            argv=argv,
        ) from exc


def _kill(proc: subprocess.Popen[str], own_session: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if own_session:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()


def tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def spawn_daemon(argv: list[str], *, log: Path, env: dict[str, str], what: str, install: str = "") -> int:
    """Start ``argv`` in its own session, detached from this process (stdin from /dev/null,
    stdout and stderr appended to ``log``), and return its PID without waiting for it: a
    service meant to outlive the command that started it. Raises
    :class:`ProgramNotFoundError` when ``argv[0]`` cannot be started."""
    with log.open("ab") as out:
        proc = _popen(
            argv, what, install, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    return proc.pid

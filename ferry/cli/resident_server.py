"""The resident ferry process (see :mod:`ferry.cli.resident`): imports Prefect and ferry's flows
once, then forks one child per command handed to it on its Unix socket.

One thread, one ``select`` loop: the listening socket, each client's connection (signals to pass
on, or its hang-up) and a pipe that SIGCHLD wakes (a child's exit, sent to its client). The
child takes the client's stdin, stdout and stderr, environment, working directory and umask,
refreshes Prefect's settings and logging from that environment, and runs ``ferry.cli.main``
as a fresh ``ferry`` process would. Started by :func:`ferry.cli.resident.start_in_background`:
``python -m ferry.cli.resident_server FINGERPRINT``; ``... status`` shows the resident of this
installation, ``... stop`` stops it once its running commands have ended.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import random
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ferry.cli import resident

#: What a command imports on its way; imported once here, before the first fork.
PRELOAD = (
    "prefect",
    "prefect.flows",
    "prefect.tasks",
    "prefect.client.orchestration",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.logging.configuration",
    "prefect.deployments",
    "fastapi.encoders",
    "flows.snapshot",
    "flows.restore",
    "flows.migrate",
    "ferry.cli.snapshot",
    "ferry.cli.restore",
    "ferry.cli.migrate",
    "ferry.cli.prefect_server",
    "ferry.cli.terminal",
    "prefect.artifacts",
    "prefect.utilities.visualization",
    "anyio._backends._asyncio",
    "anyio.streams.tls",
    "encodings.idna",
    "fsspec",
    "fsspec.implementations.chained",
    "fsspec.implementations.local",
    "s3fs",
    "zstandard",
    "rich.console",
    "rich.live",
    "rich.progress",
)
#: The signals a client may have passed on to its command.
PASSED_ON = frozenset(int(s) for s in resident.FORWARDED)


@dataclass
class Command:
    pid: int
    conn: socket.socket
    buffer: bytes = b""


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} resident {os.getpid()}: {message}", file=sys.stderr, flush=True)


def preload() -> None:
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    conn.settimeout(10)
    head, fds, _flags, _addr = socket.recv_fds(conn, resident.HEADER.size, 3)
    try:
        if not head and not fds:
            raise ValueError("")  # a look at whether the resident answers (status), not a command
        if resident.peer_uid(conn) != os.geteuid():
            raise ValueError("a client of another user")
        if len(head) != resident.HEADER.size or len(fds) != 3:
            raise ValueError("a malformed request")
        (size,) = resident.HEADER.unpack(head)
        if size > resident.MAX_REQUEST:
            raise ValueError("a request too large")
        body = b""
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("a request cut short")
            body += chunk
        request = json.loads(body.decode("utf-8", "surrogateescape"))
        if not (
            isinstance(request.get("argv"), list)
            and isinstance(request.get("env"), dict)
            and isinstance(request.get("cwd"), str)
            and isinstance(request.get("umask"), int)
        ):
            raise ValueError("a malformed request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    conn.setblocking(False)
    return request, fds


def _stream(fd: int, mode: str) -> Any:
    line = os.isatty(fd) or fd == 2
    return open(fd, mode, buffering=1 if line else -1, closefd=False, errors="backslashreplace" if fd == 2 else None)


def _refresh_prefect() -> None:
    """Prefect read its settings and logging configuration from the resident's environment at
    import: read them again from the command's (as a fresh process would at its import)."""
    import prefect.context
    from prefect.logging.configuration import setup_logging

    prefect.context.refresh_global_settings_context()
    setup_logging(incremental=False)


def _child(request: dict[str, Any], fds: list[int], inherited: list[int]) -> NoReturn:
    """The command's process: never returns into the resident's loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in inherited:
            with contextlib.suppress(OSError):
                os.close(fd)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        os.umask(request["umask"])
        os.chdir(request["cwd"])
        sys.stdin, sys.stdout, sys.stderr = _stream(0, "r"), _stream(1, "w"), _stream(2, "w")
        argv = [str(a) for a in request["argv"]]
        sys.argv = ["ferry", *argv]
        random.seed()  # the resident's generator state is every child's otherwise
        import ferry.cli

        code = ferry.cli.main(argv, in_resident=_refresh_prefect)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(BaseException):
            threading._shutdown()  # type: ignore[attr-defined]  # as at a normal exit: join non-daemon threads
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # Prefect's log and event workers drain here, as at a normal exit
        os._exit(code)


class Resident:
    def __init__(self, listener: socket.socket, path: Path, keep: list[int]) -> None:
        self.listener, self.path = listener, path
        self.keep = keep  # descriptors a child must not hold (the lock, the listener)
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.commands: dict[int, Command] = {}
        self.last = time.monotonic()
        self.stopping = False

    def _stop(self, *_: object) -> None:
        """SIGTERM: take no more commands; exit once the running ones have ended."""
        self.stopping = True

    def serve(self, idle_s: float) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        while True:
            for key, _ in self.selector.select(timeout=5):
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    self._reap()
                else:
                    self._from_client(key.data)
            self._reap()
            if self.stopping and self.listener.fileno() >= 0:
                self.selector.unregister(self.listener)
                self.listener.close()
                with contextlib.suppress(OSError):
                    self.path.unlink()  # a command now starts its own process and, after it, a new resident
            if self.commands:
                self.last = time.monotonic()
            elif self.stopping:
                log("stopped")
                return
            elif time.monotonic() - self.last > idle_s:
                log(f"idle for {idle_s:.0f} s: exiting")
                return

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return
        self.last = time.monotonic()
        try:
            request, fds = _read_request(conn)
        except (OSError, ValueError, TimeoutError) as exc:
            if str(exc):
                log(f"refused a connection: {exc}")
            conn.close()
            return
        others = [c.conn.fileno() for c in self.commands.values()]
        inherited = [*self.keep, self.selector.fileno(), self.wake_r, self.wake_w, conn.fileno(), *others]
        pid = os.fork()
        if pid == 0:
            _child(request, fds, inherited)
        for fd in fds:
            os.close(fd)
        command = Command(pid, conn)
        self.commands[pid] = command
        self.selector.register(conn, selectors.EVENT_READ, command)
        log(f"child {pid}: ferry {str(request['argv'][0]) if request['argv'] else ''}")
        self._send(command, {"pid": pid})

    def _send(self, command: Command, message: dict[str, int]) -> None:
        with contextlib.suppress(OSError):
            command.conn.setblocking(True)
            command.conn.settimeout(5)
            command.conn.sendall(json.dumps(message).encode() + b"\n")
            command.conn.setblocking(False)

    def _from_client(self, command: Command) -> None:
        try:
            data = command.conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client is gone (killed, its terminal closed): interrupt its command
            self.selector.unregister(command.conn)
            with contextlib.suppress(ProcessLookupError):
                os.kill(command.pid, signal.SIGINT)
            return
        command.buffer += data
        while b"\n" in command.buffer:
            line, command.buffer = command.buffer.split(b"\n", 1)
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                signum = json.loads(line).get("signal")
                if signum in PASSED_ON:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(command.pid, signum)

    def _reap(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.wake_r, 512):
                pass
        while self.commands:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            command = self.commands.pop(pid, None)
            if command is None:
                continue
            if os.WIFSIGNALED(status):
                message = {"signal": os.WTERMSIG(status)}
            else:
                message = {"exit": os.waitstatus_to_exitcode(status)}
            log(f"child {pid}: {message}")
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(command.conn)
            self._send(command, message)
            command.conn.close()


def main(argv: list[str]) -> int:
    if argv[:1] in (["status"], ["stop"]):
        return resident.main(argv)
    expected = argv[0] if argv else ""
    folder = resident.private_run_dir(create=True)
    if folder is None:
        log(f"{resident.run_dir()} is not a private directory of this user: not starting")
        return 1
    lock = os.open(resident.lock_path(folder, expected), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another resident of this installation runs or is starting
    started = time.monotonic()
    preload()
    if resident.fingerprint() != expected:
        log("the installation changed while starting: not serving it")
        return 0
    os.chdir("/")
    path = resident.socket_path(folder, expected)
    path.unlink(missing_ok=True)  # left by a resident that was killed; this one holds the lock
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old)
    listener.listen(16)
    log(f"ready in {time.monotonic() - started:.1f} s on {path}")
    try:
        Resident(listener, path, [lock, listener.fileno()]).serve(resident.idle_seconds())
    finally:
        with contextlib.suppress(OSError):
            if listener.fileno() >= 0:
                path.unlink()
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

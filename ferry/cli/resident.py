"""The resident ferry process: the flow commands without importing Prefect again each time.

``ferry snapshot``, ``restore`` and ``migrate`` run Prefect flows, and a fresh process spends
about a second importing Prefect and ferry's flows before it does anything. The first such
command runs in its own process as always and then starts, in the background, one resident
process (:mod:`ferry.cli.resident_server`) that has imported all of it and waits on a Unix
socket. Later commands hand it their arguments, environment, working directory and umask, and
their stdin, stdout and stderr themselves (SCM_RIGHTS): it forks a child that runs the command
exactly as this process would have, writing to this terminal. This process forwards Ctrl-C and
other signals to that child and exits with its status. The flow runs still show up in the
Prefect server's UI as before.

The socket is ``$FERRY_RUN_DIR/resident-<fingerprint>.sock`` (default ``/run/ferry``, a
directory only its owner may use). The fingerprint covers the Python interpreter and every
source file of ferry, its flows, tasks and storage, and the site-packages directories, so a
changed installation is never served by old code: it gets a resident of its own and the old one
exits when idle. A resident exits after ``FERRY_RESIDENT_IDLE`` seconds (default 900) without a
command. ``FERRY_RESIDENT=off`` runs every command in its own process.
``python -m ferry.cli.resident_server status`` shows the resident for this installation, ``stop``
stops it (once its running commands have ended).

This module is the client: it imports no Prefect. Anything going wrong before the resident has
forked the command's child (no resident, an old one, a closed socket) runs the command here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import signal
import socket
import stat
import struct
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: The commands that run a Prefect flow; the others are quick in their own process.
COMMANDS = frozenset({"snapshot", "restore", "migrate"})
SWITCH_ENV = "FERRY_RESIDENT"
IDLE_ENV = "FERRY_RESIDENT_IDLE"
DEFAULT_IDLE_S = 900
RUN_DIR_ENV = "FERRY_RUN_DIR"
DEFAULT_RUN_DIR = "/run/ferry"
#: The top-level packages whose source the resident runs.
PACKAGES = ("ferry", "flows", "tasks", "storage")
#: Signals this process passes on to the command's child instead of acting on them.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
HEADER = struct.Struct("!I")
MAX_REQUEST = 4 << 20


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() not in ("off", "0", "no", "false")


def idle_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get(IDLE_ENV, "") or DEFAULT_IDLE_S))
    except ValueError:
        return float(DEFAULT_IDLE_S)


def run_dir() -> Path:
    return Path(os.environ.get(RUN_DIR_ENV, "").strip() or DEFAULT_RUN_DIR)


def private_run_dir(create: bool) -> Path | None:
    """The run directory when it is this user's and no one else may enter it (else None: a
    socket another user could have placed there must not receive this command's environment)."""
    folder = run_dir()
    try:
        if create:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return folder


def fingerprint() -> str:
    """What the resident's code is: the interpreter, each source file of :data:`PACKAGES` (path,
    modification time, size) and the site-packages directories (an install changes them)."""
    digest = hashlib.sha256(f"{sys.executable}\0{sys.version}\0".encode())
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        for location in sorted(spec.submodule_search_locations or []) if spec else []:
            for path in sorted(Path(location).rglob("*.py")):
                with contextlib.suppress(OSError):
                    st = path.stat()
                    digest.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}\0".encode())
    paths = sysconfig.get_paths()
    for folder in sorted({paths["purelib"], paths["platlib"]}):
        with contextlib.suppress(OSError):
            digest.update(f"{folder}\0{Path(folder).stat().st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def socket_path(folder: Path, fp: str) -> Path:
    return folder / f"resident-{fp}.sock"


def lock_path(folder: Path, fp: str) -> Path:
    return folder / f"resident-{fp}.lock"


def log_path(folder: Path, fp: str) -> Path:
    return folder / f"resident-{fp}.log"


def _peer(sock: socket.socket) -> tuple[int, int]:
    """The PID and user id of the process at the other end of a Unix socket."""
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return int(pid), int(uid)


def peer_uid(sock: socket.socket) -> int:
    return _peer(sock)[1]


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _connect() -> socket.socket | None:
    folder = private_run_dir(create=False)
    if folder is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path(folder, fingerprint())))
        if peer_uid(sock) != os.geteuid():
            raise OSError("the resident socket belongs to another user")
    except OSError:
        sock.close()
        return None
    return sock


@contextlib.contextmanager
def _forwarding(sock: socket.socket) -> Iterator[None]:
    """While the child runs, the signals this process gets go to it (the resident sends them)."""

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):
            sock.sendall(json.dumps({"signal": signum}).encode() + b"\n")

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def forward(argv: list[str]) -> int | None:
    """Run ``ferry argv`` in the resident process; its exit status, or None when no resident
    took the command (the caller runs it itself)."""
    if not enabled():
        return None
    sock = _connect()
    if sock is None:
        return None
    with sock:
        try:
            request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": str(Path.cwd()), "umask": _umask()})
            body = request.encode("utf-8", "surrogateescape")
            socket.send_fds(sock, [HEADER.pack(len(body))], [0, 1, 2])
            sock.sendall(body)
            reader = sock.makefile("rb")
            started = reader.readline()
        except (OSError, ValueError):
            return None
        if not started:  # the resident closed before forking the command: nothing ran yet
            return None
        with _forwarding(sock):
            try:
                ended = reader.readline()
            except OSError:
                ended = b""
        return _status(ended)


def _status(line: bytes) -> int:
    try:
        result = json.loads(line) if line else {}
    except ValueError:
        result = {}
    if isinstance(result.get("exit"), int):
        return int(result["exit"])
    if isinstance(result.get("signal"), int):
        signum = int(result["signal"])
        print(f"ferry: the command was ended by signal {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    print(
        "ferry: the resident ferry process ended before the command did; check with `ferry ls` what the "
        f"command left and run it again (its log: {run_dir()}/resident-*.log)",
        file=sys.stderr,
    )
    return 1


def _held(lock: Path) -> bool:
    """Whether a resident holds ``lock`` (it does from its start to its exit)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def start_in_background() -> None:
    """Start the resident for this installation unless one runs or is starting. Quiet: the
    resident only saves time, and the command has already done its work."""
    if not enabled():
        return
    from ferry.errors import FerryError
    from ferry.runtime.process import spawn_daemon

    folder = private_run_dir(create=True)
    if folder is None:
        return
    fp = fingerprint()
    if _held(lock_path(folder, fp)):
        return
    argv = [sys.executable, "-m", "ferry.cli.resident_server", fp]
    with contextlib.suppress(OSError, FerryError):
        spawn_daemon(argv, log=log_path(folder, fp), env=dict(os.environ), what="start the resident ferry process")


def status() -> dict[str, Any] | None:
    """The resident for this installation, if one answers: its PID and socket."""
    sock = _connect()
    if sock is None:
        return None
    with sock:
        return {"pid": _peer(sock)[0], "socket": sock.getpeername()}


def main(argv: list[str]) -> int:
    found = status()
    if argv[:1] == ["status"]:
        print(json.dumps(found) if found else "no resident ferry process for this installation")
        return 0 if found else 1
    if argv[:1] == ["stop"]:
        if found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(found["pid"]), signal.SIGTERM)
        print(f"stopped the resident ferry process (PID {found['pid']})" if found else "no resident ferry process")
        return 0
    print("usage: python -m ferry.cli.resident_server {status|stop}", file=sys.stderr)
    return 2

"""Can this CRIU checkpoint and restore a real process on this kernel? Find out by doing it.

`criu check` passes on hosts where CRIU cannot dump an ordinary server (CRIU 4.1 on Linux 6.16+
fails on every inet socket), so this probe really dumps and restores a throwaway process that
holds what services hold: a listening TCP socket on 127.0.0.1, an ESTABLISHED connection (to
itself, carrying data all the time) and an flock'd file. It passes only when the restored
process is alive, its listener answers, its connection still carries data and its lock is held.

A stand-alone program on purpose, standard library only: ``scripts/provision-criu`` runs it with
the host's python3 before any virtualenv exists, and ferry runs it through ferry/runtime.py::

    python3 ferry/criu_probe.py [--criu PATH] [--user NAME] [--json]

Exit status 0 when the probe passes, 1 when it fails, 2 on bad usage. With ``--json`` it prints
one JSON object (see :class:`ProbeResult`); otherwise one line for a human.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

CRIU_TIMEOUT = 60
READY_TIMEOUT = 10.0
OPTIONS = ["--tcp-established", "--file-locks"]
PR_SET_CHILD_SUBREAPER = 36

# The throwaway process: `python3 -I -S -c WORKLOAD WORKDIR`. It bounces a byte through its own
# TCP connection forever and answers every client of its listener with the number of round trips.
WORKLOAD = """
import fcntl, os, select, socket, sys
work = sys.argv[1]
lock = open(os.path.join(work, "lock"), "w")
fcntl.flock(lock, fcntl.LOCK_EX)
ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(8)
cli = socket.create_connection(ls.getsockname())
srv = ls.accept()[0]
with open(os.path.join(work, "port.tmp"), "w") as f:
    f.write("%d %d" % (ls.getsockname()[1], cli.getsockname()[1]))
os.rename(os.path.join(work, "port.tmp"), os.path.join(work, "port"))
n = 0
while True:
    cli.sendall(b"p")
    if srv.recv(1) != b"p":
        sys.exit(3)
    srv.sendall(b"q")
    if cli.recv(1) != b"q":
        sys.exit(4)
    n += 1
    if select.select([ls], [], [], 0.02)[0]:
        c = ls.accept()[0]
        c.sendall(b"%d\\n" % n)
        c.close()
"""

# Known failures, recognised in CRIU's output: (kind, pattern).
KNOWN_FAILURES = [
    ("socket-passcred", re.compile(r"Can't get 1:16 opt")),
    ("vdso", re.compile(r"vDSO|vdso")),
    ("rlimit-denied", re.compile(r"Can't get rlimit.*Operation not permitted")),
    ("file-locks", re.compile(r"file locks are hold")),
    ("pid-busy", re.compile(r"Can't fork.*File exists")),
]


@dataclass
class ProbeResult:
    ok: bool
    stage: str  # where it stopped: start, dump, restore, verify (or "done" when ok)
    criu: str  # the criu command probed
    version: str = ""
    user: str = "root"
    kind: str = ""  # one of KNOWN_FAILURES' kinds, "" when unknown or ok
    detail: str = ""  # one sentence for a human
    errors: list[str] = field(default_factory=list)  # CRIU's error lines, last few
    seconds: float = 0.0


class ProbeFailed(Exception):
    def __init__(self, stage: str, detail: str, output: str = "") -> None:
        super().__init__(detail)
        self.stage = stage
        self.detail = detail
        self.output = output


def classify(output: str) -> str:
    for kind, pattern in KNOWN_FAILURES:
        if pattern.search(output):
            return kind
    return ""


def error_lines(output: str, keep: int = 6) -> list[str]:
    lines = [line.strip() for line in output.splitlines() if "Error" in line or "error" in line]
    lines = lines or [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-keep:]


def criu_version(criu: str) -> str:
    try:
        proc = subprocess.run([criu, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"Version:\s*(\S+)", proc.stdout)
    return match.group(1) if match else ""


def _become_subreaper() -> None:
    """Restored processes (criu restore -d) are re-parented to us, so we can reap them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _reap(pid: int, timeout: float = 10.0) -> None:
    """Kill ``pid`` if it lives and wait until /proc/PID is gone, so the PID is free again
    (a restore right after a dump fails with "Can't fork ... File exists" until then)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                continue
        time.sleep(0.01)


def _ask(port: int) -> int:
    """Connect to the workload's listener; it answers with its round-trip count."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:
                break
            data += chunk
    return int(data.strip() or b"-1")


def _why_gone(pid: int) -> str:
    """How the probe's process ended, when it has (the probe is its subreaper, so a restored
    process that died is a zombie of ours until reaped here)."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ""
    if got != pid:
        return ""
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (3, 4):
        return ": it exited because its established TCP connection broke"
    return f": it ended with status {os.waitstatus_to_exitcode(status)}"


def _check_running(pid: int, port: int, lock: Path, stage: str) -> None:
    if not _alive(pid):
        raise ProbeFailed(stage, f"the process (pid {pid}) is not running{_why_gone(pid)}")
    try:
        first = _ask(port)
        deadline = time.monotonic() + READY_TIMEOUT
        while _ask(port) <= first:
            if time.monotonic() > deadline:
                raise ProbeFailed(stage, "the process's established TCP connection carries no data")
            time.sleep(0.05)
    except (OSError, ValueError) as exc:
        deadline = time.monotonic() + 1
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _alive(pid):
            died = "the process died (it exits when its established TCP connection breaks)"
            raise ProbeFailed(stage, died) from exc
        raise ProbeFailed(stage, f"the process's listening socket on 127.0.0.1:{port} does not answer: {exc}") from exc
    with lock.open("a") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        fcntl.flock(other, fcntl.LOCK_UN)
    raise ProbeFailed(stage, "the process no longer holds its file lock")


def _criu(criu: str, args: list[str], log: Path, stage: str) -> None:
    argv = [criu, *args, "-o", str(log), *OPTIONS]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CRIU_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise ProbeFailed(stage, f"{criu} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProbeFailed(stage, f"`criu {stage}` did not finish within {CRIU_TIMEOUT} s") from exc
    if proc.returncode != 0:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            text = ""
        output = "\n".join(part for part in (text, proc.stdout, proc.stderr) if part)
        raise ProbeFailed(stage, f"`criu {stage}` failed (exit status {proc.returncode})", output)


def _interpreter() -> str:
    """A python3 any user can run (a virtualenv's may live under root's home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK) and Path(candidate).stat().st_mode & 0o001:
            return candidate
    return os.path.realpath(sys.executable)


@contextlib.contextmanager
def _workload(top: Path, user: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    work = top / "work"
    work.mkdir()
    entry = pwd.getpwnam(user)
    top.chmod(0o711)  # traversable only: the workload's user must reach work/
    os.chown(work, entry.pw_uid, entry.pw_gid)
    proc = subprocess.Popen(
        [_interpreter(), "-I", "-S", "-c", WORKLOAD, str(work)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd="/",
        user=entry.pw_uid if entry.pw_uid != os.geteuid() else None,
        group=entry.pw_gid if entry.pw_uid != os.geteuid() else None,
        extra_groups=[] if entry.pw_uid != os.geteuid() else None,
    )
    try:
        yield proc, work
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], port_file: Path) -> tuple[int, int]:
    deadline = time.monotonic() + READY_TIMEOUT
    while not port_file.exists():
        if proc.poll() is not None:
            raise ProbeFailed("start", f"the throwaway process exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise ProbeFailed("start", f"the throwaway process was not ready within {READY_TIMEOUT} s")
        time.sleep(0.01)
    listener, client = port_file.read_text().split()
    return int(listener), int(client)


def _dump_and_restore(criu: str, user: str, top: Path, restore_options: list[str]) -> None:
    images = top / "images"
    images.mkdir(mode=0o700)
    with _workload(top, user) as (proc, work):
        pid = proc.pid
        port, client_port = _wait_ready(proc, work / "port")
        _check_running(pid, port, work / "lock", "start")
        try:
            try:
                _criu(criu, ["dump", "-t", str(pid), "-D", str(images)], top / "dump.log", "dump")
            finally:
                # Dumped (or not): the original is killed and reaped either way, freeing its PID.
                proc.kill()
                proc.wait(timeout=10)
                _reap(pid)
            restore = ["restore", "-D", str(images), "-d", "--pidfile", str(top / "restored.pid"), *restore_options]
            _criu(criu, restore, top / "restore.log", "restore")
            _check_running(pid, port, work / "lock", "verify")
        finally:
            _reap(pid)
            _unlock_network(port, client_port)


def _unlock_network(*ports: int) -> None:
    """A failed ``restore --tcp-established`` leaves CRIU's iptables rules that drop the
    connection's packets (marked ``! --mark 0xc114``); remove those of our connection."""
    wanted = {str(p) for p in ports}
    try:
        rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    for rule in rules.splitlines():
        words = rule.split()
        if not words or words[0] != "-A" or "0xc114" not in words:
            continue
        used = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--sport", "--dport")}
        if used and used <= wanted:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["iptables", "-D", *words[1:]], capture_output=True, timeout=30, check=False)


def probe(criu: str = "criu", user: str = "root", restore_options: list[str] | None = None) -> ProbeResult:
    """Dump and restore a throwaway process run as ``user``; never raises for a failing CRIU.
    ``restore_options`` are added to `criu restore` (tests: ``--tcp-close`` must fail the probe)."""
    started = time.monotonic()
    result = ProbeResult(ok=False, stage="start", criu=criu, version=criu_version(criu), user=user)
    if os.geteuid() != 0:
        result.detail = "the probe needs root (CRIU dumps and restores processes)"
        return result
    try:
        pwd.getpwnam(user)
    except KeyError:
        result.detail = f"there is no user {user!r} on this host"
        return result
    _become_subreaper()
    top = Path(tempfile.mkdtemp(prefix="ferry-criu-probe-"))
    try:
        _dump_and_restore(criu, user, top, restore_options or [])
    except ProbeFailed as exc:
        result.stage = exc.stage
        result.kind = classify(exc.output)
        result.detail = exc.detail
        result.errors = error_lines(exc.output)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        result.detail = f"the probe itself failed: {exc}"
    else:
        result.ok = True
        result.stage = "done"
        result.detail = (
            "dumped and restored a process holding a listening TCP socket, an established "
            "connection and a file lock; after the restore it answered and its connection carried data"
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--criu", default="criu", help="the criu command to probe (default: criu on PATH)")
    parser.add_argument("--user", default="root", help="run the throwaway process as this user")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--restore-option", action="append", default=[], help="add this option to `criu restore`")
    args = parser.parse_args(argv)
    result = probe(args.criu, args.user, args.restore_option)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        state = "passes" if result.ok else f"FAILS at {result.stage}"
        line = (
            f"criu probe ({result.criu}, version {result.version or '?'}, as {result.user}): {state}: {result.detail}"
        )
        if result.kind:
            line += f" [{result.kind}]"
        print(line + "".join(f"\n  {e}" for e in result.errors), file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

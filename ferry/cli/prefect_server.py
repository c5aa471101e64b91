"""The Prefect server the ``ferry`` CLI reports its flow runs to, when none is configured.

With ``PREFECT_API_URL`` set (in the environment or the Prefect profile) the CLI uses that server
and this module does nothing. Without it, Prefect would start a fresh ephemeral server inside
every command (seconds each time, and runs nobody can look at afterwards); instead the first
command starts one local server in the background, ``prefect server start`` bound to 127.0.0.1
(port 4200 when free, else any free port) on Prefect's own database in ``PREFECT_HOME``, records
its PID and URL under the staging root (``<staging>/prefect-server/``, one per ``PREFECT_HOME``),
prints its UI address once, and later commands reuse it for as long as it answers. The runs show
up in that server's UI like any other flow runs.

The snapshot and restore commands call :func:`use_for_this_command` before running their flow.
``FERRY_PREFECT_SERVER=ephemeral`` keeps Prefect's per-command ephemeral server instead.
``python -m ferry.cli.prefect_server stop`` stops the background server (``status`` shows it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ferry.errors import FerryError
from ferry.runtime.process import spawn_daemon
from ferry.staging import staging_root

PREFERRED_PORT = 4200
STARTUP_S = 300  # a first start migrates Prefect's database; a loaded host takes a while


class PrefectServerError(FerryError):
    area = "prefect"


@dataclass(frozen=True)
class Server:
    pid: int
    url: str  # http://127.0.0.1:PORT (the UI); the API is at url + "/api"
    prefect_home: str
    log: str

    @property
    def api(self) -> str:
        return f"{self.url}/api"


def _home() -> str:
    from prefect.settings import get_current_settings

    return str(Path(get_current_settings().home).resolve())


def _configured_api() -> str:
    from prefect.settings import get_current_settings

    return str(get_current_settings().api.url or "")


def state_file(prefect_home: str) -> Path:
    folder = staging_root() / "prefect-server"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    return folder / f"{hashlib.sha256(prefect_home.encode()).hexdigest()[:16]}.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _healthy(url: str) -> bool:
    import urllib.error  # here, not at the top: every ferry command imports this module
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=5) as r:  # noqa: S310 - http://127.0.0.1 only
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"prefect" in b" ".join(cmdline) and b"server" in cmdline


def _exited(child: int) -> bool:
    """Whether the server this process just started has exited (it is our child: its
    /proc cmdline may still be ours until it has exec'd, so :func:`_alive` cannot tell yet)."""
    try:
        return os.waitpid(child, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def recorded(path: Path) -> Server | None:
    """The server recorded in ``path``, if it still runs and answers."""
    try:
        server = Server(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return server if _alive(server.pid) and _healthy(server.url) else None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", PREFERRED_PORT))
            return PREFERRED_PORT
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _start(path: Path, home: str) -> Server:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = path.with_suffix(".log")
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"{url}/api",
    }
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    pid = spawn_daemon(argv, log=log, env=env, what="start a local Prefect server")
    server = Server(pid, url, home, str(log))
    deadline = time.monotonic() + STARTUP_S
    while not _healthy(url):
        if _exited(pid) or time.monotonic() > deadline:
            stop_pid(pid)
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise PrefectServerError(
                f"Cannot start a local Prefect server on {url} (see {log}). Set PREFECT_API_URL to a running "
                f"Prefect server, or FERRY_PREFECT_SERVER=ephemeral for Prefect's per-command one.\n{tail}"
            )
        time.sleep(0.2)
    path.write_text(json.dumps(asdict(server)))
    return server


_COMMAND_SETTINGS = contextlib.ExitStack()


def use_for_this_command() -> None:
    """Run this command's flows against a Prefect server: the configured one, else the local
    background server (started now if none answers), for the rest of the process."""
    if os.environ.get("FERRY_PREFECT_SERVER", "").strip().lower() == "ephemeral" or _configured_api():
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = local_server()
    _COMMAND_SETTINGS.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api}))


def local_server() -> Server:
    """The local background server for this ``PREFECT_HOME``: the recorded one if it answers,
    else a new one (its UI address printed once)."""
    home = _home()
    path = state_file(home)
    with _locked(path):
        server = recorded(path)
        if server is None:
            server = _start(path, home)
            print(
                f"ferry: started a local Prefect server (PID {server.pid}); its UI, with this and later "
                f"runs: {server.url}  (set PREFECT_API_URL to use another server; stop it with "
                "`python -m ferry.cli.prefect_server stop`)",
                file=sys.stderr,
            )
    return server


def stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    home = _home()
    path = state_file(home)
    server = recorded(path)
    if argv[:1] == ["stop"]:
        if server is not None:
            stop_pid(server.pid)
        path.unlink(missing_ok=True)
        print(f"stopped the local Prefect server (PID {server.pid})" if server else "no local Prefect server running")
        return 0
    if argv[:1] == ["status"]:
        print(json.dumps(asdict(server)) if server else "no local Prefect server running")
        return 0 if server else 1
    print("usage: python -m ferry.cli.prefect_server {status|stop}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A real Prefect deployment on this machine: `prefect server start`, one process work pool and
worker per "host" (each with its own Podman store), and ferry's deployments registered from the
repository's prefect.yaml with `prefect --no-prompt deploy --all`, exactly as the README says."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def quiet_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="5",
        PREFECT_LOGGING_LEVEL="INFO",
    )
    env.update(extra)
    return env


@dataclass
class Stack:
    home: Path
    api: str = ""
    ui: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: each host's worker, its log and environment, to stop it and start it again
    workers: dict[str, tuple[subprocess.Popen[bytes], Path, dict[str, str]]] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return quiet_env(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api, **extra)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
        proc = subprocess.run(
            [PREFECT, *args],
            cwd=ROOT,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def deploy_host(self, host: str, store: str) -> None:
        self.cli("variable", "set", "ferry-store", store, "--overwrite")
        self.cli("work-pool", "create", f"ferry-{host}", "--type", "process", "--overwrite")
        self.cli("--no-prompt", "deploy", "--all", env=self.env(FERRY_HOST=host))

    def start_worker(self, host: str, log: Path, **env: str) -> None:
        with log.open("ab") as out:  # the worker keeps its own copy of the descriptor
            argv = [PREFECT, "worker", "start", "--pool", f"ferry-{host}", "--type", "process"]
            proc = subprocess.Popen(
                [*argv, "--name", f"worker-{host}"],
                cwd=ROOT,
                env=self.env(**env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(proc)
        self.workers[host] = (proc, log, env)

    def stop_worker(self, host: str) -> None:
        """Stop a host's worker, as a host going down would: its runs stay queued."""
        proc = self.workers[host][0]
        proc.terminate()
        proc.wait(timeout=60)

    def restart_worker(self, host: str) -> None:
        _, log, env = self.workers[host]
        self.start_worker(host, log, **env)


@contextmanager
def prefect_stack(home: Path) -> Iterator[Stack]:
    stack = Stack(home)
    port = free_port()
    stack.api = f"http://127.0.0.1:{port}/api"
    stack.ui = f"http://127.0.0.1:{port}"
    home.mkdir(parents=True, exist_ok=True)
    with (home / "server.log").open("wb") as log:  # the server keeps its own copy of the descriptor
        server = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=home,
            env=quiet_env(PREFECT_HOME=str(home), PREFECT_UI_API_URL=stack.api),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stack.processes.append(server)
    try:
        wait_http(f"{stack.api}/health", timeout=120)
        yield stack
    finally:
        for proc in reversed(stack.processes):
            proc.terminate()
        for proc in stack.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        time.sleep(0.5)

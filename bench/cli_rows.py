"""Benchmark 8: a tiny container (busybox `sleep`) through the `ferry` CLI, as an operator runs it.

Each command is a fresh process in README's default mode: no PREFECT_API_URL, so the CLI uses
its local background Prefect server, and its resident process runs the flow commands (both
started by a warm-up snapshot that is not counted, both stopped at the end). The same commands
with FERRY_RESIDENT=off (a process of their own, importing Prefect) are reported beside them.
Baselines: `podman container checkpoint --export --compress zstd` and
`podman container restore --import` of the same tiny container. `ferry verify` runs no flow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BenchHost, Params, unique
from tests.helpers import ULIMITS

TINY = ("sleep", "1000000")


@dataclass
class CliData:
    ferry_snapshot: list[float] = field(default_factory=list)
    podman_checkpoint: list[float] = field(default_factory=list)
    ferry_restore: list[float] = field(default_factory=list)
    podman_restore: list[float] = field(default_factory=list)
    ferry_verify: list[float] = field(default_factory=list)
    alone_snapshot: list[float] = field(default_factory=list)  # FERRY_RESIDENT=off
    alone_restore: list[float] = field(default_factory=list)


def cli_env(host: BenchHost, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        FERRY_PODMAN=host.env_value,
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        FERRY_RUN_DIR=str(work / "run"),
        FERRY_RESIDENT="on",
    )
    return env


def resident(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ferry.cli.resident_server", command], env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def ferry(env: dict[str, str], *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ferry.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ferry {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def podman(host: BenchHost, *args: str) -> float:
    start = time.perf_counter()
    host.check(*args)
    return time.perf_counter() - start


def tiny(host: BenchHost, image: str) -> str:
    name = unique("c")
    host.check("run", "-d", "--name", name, *ULIMITS, image, *TINY)
    return name


def run(host: BenchHost, p: Params, image: str) -> CliData:
    work = p.work / "cli"
    work.mkdir(parents=True, exist_ok=True)
    env = cli_env(host, work)
    store = f"file://{work}/store"
    data = CliData()
    warm = tiny(host, image)
    ferry(env, "snapshot", warm, "--to", store)  # starts the local Prefect server and the resident: not counted
    host.remove(warm)
    deadline = time.monotonic() + 300
    while resident(env, "status").returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the resident ferry process did not start (see FERRY_RUN_DIR's resident-*.log)")
        time.sleep(0.5)
    alone = dict(env, FERRY_RESIDENT="off")
    try:
        for rep in range(p.reps):
            f, q = tiny(host, image), tiny(host, image)
            export = work / f"{q}.tar.zst"

            def ferry_snap(f: str = f) -> str:
                wall, url = ferry(env, "snapshot", f, "--to", store)
                data.ferry_snapshot.append(wall)
                return url

            def podman_snap(q: str = q, export: Path = export) -> str:
                args = ("container", "checkpoint", "--export", str(export), "--compress", "zstd", q)
                data.podman_checkpoint.append(podman(host, *args))
                return str(export)

            snaps = [ferry_snap, podman_snap] if rep % 2 == 0 else [podman_snap, ferry_snap]
            out = {fn.__name__: fn() for fn in snaps}
            url = out["ferry_snap"]
            data.ferry_verify.append(ferry(env, "verify", url)[0])
            names = unique("cr"), unique("cr")

            def ferry_back(url: str = url, name: str = names[0]) -> None:
                data.ferry_restore.append(ferry(env, "restore", url, "--name", name)[0])

            def podman_back(export: Path = export, name: str = names[1]) -> None:
                args = ("container", "restore", "--import", str(export), "--name", name)
                data.podman_restore.append(podman(host, *args))

            for fn in [ferry_back, podman_back] if rep % 2 == 0 else [podman_back, ferry_back]:
                fn()
            a, back = tiny(host, image), unique("ca")
            wall, alone_url = ferry(alone, "snapshot", a, "--to", store)
            data.alone_snapshot.append(wall)
            data.alone_restore.append(ferry(alone, "restore", alone_url, "--name", back)[0])
            host.remove(f, q, *names, a, back)
            export.unlink(missing_ok=True)
            print(f"  cli rep {rep + 1}/{p.reps}: ferry snapshot {data.ferry_snapshot[-1]:.2f} s / restore "
                  f"{data.ferry_restore[-1]:.2f} s, podman {data.podman_checkpoint[-1]:.2f} s / "
                  f"{data.podman_restore[-1]:.2f} s")  # fmt: skip
        log = "".join(f.read_text() for f in (work / "run").glob("resident-*.log"))
        served = len(re.findall(r"child [0-9]+: ferry (snapshot|restore)$", log, re.M))
        if served < 2 * p.reps:
            raise RuntimeError(f"the resident ran {served} of the {2 * p.reps} counted commands:\n{log[-2000:]}")
    finally:
        resident(env, "stop")
        subprocess.run([sys.executable, "-m", "ferry.cli.prefect_server", "stop"], env=env, capture_output=True,
                       timeout=120, check=False)  # fmt: skip
    return data

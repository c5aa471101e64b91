"""Shared pieces of the benchmarks: the private Podman host, the seeded workload, rows, timing."""

from __future__ import annotations

import itertools
import os
import shutil
import statistics
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import ULIMITS, Host, build_rootfs_tar, wait_for

IMAGE = "localhost/ferry-bench:latest"
MIB = 1 << 20
_NAMES = itertools.count()


@dataclass(frozen=True)
class Params:
    work: Path  # scratch space: stores, staging, exports
    hog: Path  # the static workload binary (bench/hog.c)
    mem: int  # bytes the workload holds in memory (half random, half text)
    disk: int  # bytes of rootfs changes (half random, half text)
    reps: int
    archive: int  # bytes of the directory archived in the archive-stage bench
    rss_sizes: tuple[int, ...]  # archive sizes for the peak-RSS bench


@dataclass
class Row:
    label: str
    baseline: str
    ferry: str
    ratio: float | None
    target: str
    met: bool | None


@dataclass
class Table:
    title: str
    note: str = ""
    rows: list[Row] = field(default_factory=list)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def secs(values: list[float]) -> str:
    return f"{median(values):.2f} s (n={len(values)})"


def mib(nbytes: float) -> str:
    return f"{nbytes / MIB:.1f} MiB"


def unique(prefix: str) -> str:
    return f"{prefix}{next(_NAMES)}"


class BenchHost(Host):
    """The tests' private Podman store, with an image that carries the workload binary."""

    def check(self, *args: str) -> str:
        return self.podman(*args, timeout=900).stdout

    def start_workload(self, name: str, p: Params, seed: int = 7) -> str:
        self.check("run", "-d", "--name", name, *ULIMITS, IMAGE, "/bin/hog", str(p.mem), str(p.disk), str(seed))
        wait_for(lambda: self.podman("exec", name, "cat", "/data/ready", check=False).returncode == 0,
                 what=f"workload {name} to be ready", timeout=300, interval=0.2)  # fmt: skip
        return name

    def remove(self, *names: str) -> None:
        if names:
            self.podman("rm", "-f", "-t", "0", *names, check=False)


@contextmanager
def bench_host(work: Path, hog: Path) -> Iterator[BenchHost]:
    # Podman refuses a runroot longer than 50 characters; FERRY_BENCH_HOST: another one (two runs at once)
    base = Path(os.environ.get("FERRY_BENCH_HOST", "/var/tmp/fbh"))
    if base.exists():
        BenchHost(base).cleanup()
        shutil.rmtree(base, ignore_errors=True)
    host = BenchHost(base)
    image_dir = work / "image"
    shutil.rmtree(image_dir, ignore_errors=True)
    image_dir.mkdir(parents=True)
    rootfs = build_rootfs_tar(image_dir)
    with tarfile.open(rootfs, "a") as tar:
        tar.add(hog, arcname="./bin/hog")
    host.check("import", str(rootfs), IMAGE)
    try:
        yield host
    finally:
        host.cleanup()
        subprocess.run(["umount", "-R", str(base / "root")], capture_output=True, check=False)
        shutil.rmtree(base, ignore_errors=True)

"""Where the time of a tiny container's snapshot and restore goes: each stage function called
directly (no Prefect), and every podman command it runs, timed. Not part of results.md: a
profile to read when a row misses its target.

    PYTHONPATH=$PWD python -m bench.profile [--reps 3]      # as root, with CRIU on PATH
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.common import median
from tests.helpers import ULIMITS, Host, build_rootfs_tar

BASE = Path("/var/tmp/fbp")  # Podman refuses a runroot longer than 50 characters
IMAGE = "localhost/ferry-profile:latest"


class Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)

    def add(self, what: str, seconds: float) -> None:
        self.seconds[what].append(seconds)


def timed_podman(clock: Clock) -> None:
    """Time every podman command ferry's runtime runs (by its subcommand)."""
    from ferry.runtime import podman

    original = podman.Podman._run

    def _run(self: podman.Podman, args: list[str], **kw: object) -> object:
        start = time.perf_counter()
        try:
            return original(self, args, **kw)  # type: ignore[arg-type]
        finally:
            words = [a for a in args if not a.startswith("-")][:2]
            clock.add("podman " + " ".join(words), time.perf_counter() - start)

    podman.Podman._run = _run  # type: ignore[assignment,method-assign]


def one(clock: Clock, host: Host, work: Path, rep: int) -> None:
    from ferry.staging import new_run_dir, remove_run_dir
    from storage.ref import StoreRef
    from tasks.archive import build_archive
    from tasks.dump import dump
    from tasks.freeze import frozen
    from tasks.inspect import inspect
    from tasks.publish import publish
    from tasks.receive import receive
    from tasks.restore import restore
    from tasks.rootfs_diff import rootfs_diff
    from tasks.sidecar import read_announced

    name = f"p{rep}"
    host.podman("run", "-d", "--name", name, *ULIMITS, IMAGE, "sleep", "100000")
    ref = StoreRef(f"file://{work}/store")

    def stage(what: str, fn, *args):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = fn(*args)
        clock.add(what, time.perf_counter() - start)
        return out

    start = time.perf_counter()
    staging = new_run_dir("snapshot", name)
    subject = stage("snapshot: inspect", inspect, name, ref)
    with frozen(subject.info):
        diff = stage("snapshot: rootfs-diff", rootfs_diff, subject.info, staging)
        dumped = stage("snapshot: dump", dump, subject.info, staging, False)
    archive = stage("snapshot: archive", build_archive, subject, dumped, diff, "zstd", ref)
    url = stage("snapshot: publish", publish, archive, ref)
    remove_run_dir(staging)
    clock.add("snapshot (stages, no Prefect)", time.perf_counter() - start)
    host.podman("rm", "-f", "-t", "0", name)

    start = time.perf_counter()
    staging = new_run_dir("restore", name)
    announced = stage("restore: sidecar", read_announced, url, ref)
    prepared = stage("restore: receive", receive, announced, staging, ref, f"{name}r")
    stage("restore: restore", restore, prepared)
    remove_run_dir(staging)
    clock.add("restore (stages, no Prefect)", time.perf_counter() - start)
    host.podman("rm", "-f", "-t", "0", f"{name}r")


def prefect_import_seconds() -> float:
    code = "import time; t=time.perf_counter(); import prefect, prefect.flows; print(time.perf_counter()-t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    reps = ap.parse_args().reps
    work = Path("/var/tmp/ferry-profile")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.environ.update(FERRY_STAGING=str(work / "staging"), FERRY_PROGRESS_MIN_BYTES=str(1 << 62))
    from ferry.keygen import keygen

    pair = keygen(work / "keys", "ferry@profile")
    os.environ.update(FERRY_SIGNING_KEY=str(pair.private), FERRY_TRUSTED_KEYS=str(pair.public))
    host = Host(BASE)
    host.cleanup()
    shutil.rmtree(BASE, ignore_errors=True)
    os.environ["FERRY_PODMAN"] = host.env_value
    rootfs = build_rootfs_tar(work)
    host.podman("import", str(rootfs), IMAGE)
    clock = Clock()
    timed_podman(clock)
    try:
        for rep in range(reps):
            one(clock, host, work, rep)
        clock.add("import prefect (fresh interpreter)", prefect_import_seconds())
    finally:
        host.cleanup()
        subprocess.run(["umount", "-R", str(BASE / "root")], capture_output=True, check=False)
        shutil.rmtree(BASE, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    for what, values in sorted(clock.seconds.items()):
        per_run = sum(values) / reps if what.startswith("podman") else median(values)
        note = f"  ({len(values) / reps:.0f} call(s) per run, total per run)" if what.startswith("podman") else ""
        print(f"{what:45s} {per_run * 1000:8.0f} ms{note}")


if __name__ == "__main__":
    main()

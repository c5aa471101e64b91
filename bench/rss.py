"""Benchmark 6: peak RSS of a ferry process for large archives.

Each size runs in a fresh child process, as the snapshot and restore flows do: archive stage
streaming into a moto S3 store (tasks.archive.build_archive with the store URL) -> publish
(tasks.publish.publish, which signs and writes the sidecar) -> sidecar (tasks.sidecar.read_announced)
-> receive: the one pass from the store to the tar Podman imports (ferry.verification.receive_source
over storage.reading.stream_archive, as tasks.receive does; measured against the restore policy
without this host's Podman facts, which change what is written, not how much is held). The child
reports its VmHWM after each stage.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Params
from bench.datagen import write_tar

STAGES = ("imports", "archive", "publish", "receive")


@dataclass
class RssResult:
    size: int
    hwm_kib: dict[str, int]  # VmHWM after each stage
    seconds: dict[str, float]
    archive_bytes: int


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(dump_tar: Path, store: str, options: dict[str, Any]) -> None:
    hwm = {"imports": 0}
    seconds: dict[str, float] = {}
    from bench.archive_stage import INFO
    from ferry import restore_policy
    from ferry.archive.manifest import Source
    from ferry.archive.rebuild_context import RebuildContext
    from ferry.runtime import CheckpointStats
    from ferry.verification import receive_source
    from storage.reading import stream_archive
    from storage.ref import StoreRef
    from tasks.archive import build_archive
    from tasks.dump import DumpResult
    from tasks.inspect import Subject
    from tasks.publish import publish
    from tasks.rootfs_diff import DiffResult
    from tasks.sidecar import read_announced

    hwm["imports"] = vm_hwm_kib()
    ref = StoreRef(store, options)
    dumped = DumpResult(dump_tar, False, CheckpointStats(), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    start = time.perf_counter()
    archive = build_archive(Subject(INFO, Source()), dumped, DiffResult(None, None, 0, 0, 0), "zstd", ref)
    dump_tar.unlink()
    seconds["archive"], hwm["archive"] = time.perf_counter() - start, vm_hwm_kib()
    url = publish(archive, ref)
    seconds["publish"], hwm["publish"] = time.perf_counter() - start - sum(seconds.values()), vm_hwm_kib()
    announced = read_announced(url, ref)
    if announced.sidecar is None or announced.claims is None:
        raise RuntimeError(f"{url} cannot be received in one pass")
    imported = dump_tar.with_name("podman-import.tar")
    with stream_archive(url, ref.options()) as src, imported.open("wb") as sink:
        receive_source(
            src,
            announced.sidecar,
            sink,
            claims=announced.claims,
            ctx=RebuildContext(policy=restore_policy.load()),
        )
    imported.unlink()
    seconds["receive"], hwm["receive"] = time.perf_counter() - start - sum(seconds.values()), vm_hwm_kib()
    print(json.dumps({"hwm": hwm, "seconds": seconds, "archive_bytes": archive.digest.size}))


def run(p: Params, store: str, options: dict[str, Any]) -> list[RssResult]:
    work = p.work / "rss"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in p.rss_sizes:
        dump_tar = work / "dump.tar"
        write_tar(dump_tar, size)
        proc = subprocess.run(
            [sys.executable, "-m", "bench.rss", str(dump_tar), f"{store}/{size}", json.dumps(options)],
            capture_output=True, text=True, check=False, timeout=3600,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"peak-RSS child for {size} bytes failed:\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(RssResult(size, out["hwm"], out["seconds"], out["archive_bytes"]))
        print(f"  rss {size >> 20} MiB: peak {out['hwm']['receive'] / 1024:.0f} MiB, {out['seconds']}")
    return results


if __name__ == "__main__":
    child(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]))

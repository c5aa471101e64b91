"""Benchmark 3: snapshot + restore through S3 (moto on loopback).

ferry: the snapshot flow into s3:// then the restore flow from it. Baseline, what an operator
scripts by hand: podman export (zstd) -> s3fs put -> s3fs get -> podman import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import s3fs

from bench.common import BenchHost, Params, unique
from flows.restore import restore
from flows.snapshot import snapshot

BUCKET = "ferry-bench"


@dataclass
class S3Data:
    ferry: list[float] = field(default_factory=list)
    manual: list[float] = field(default_factory=list)


def _ferry(host: BenchHost, fs: s3fs.S3FileSystem, options: dict[str, Any], work: Path, src: str, dst: str) -> None:
    result = snapshot(container=src, to=f"s3://{BUCKET}/ferry", storage_options=options)
    restore(archive=result.url, name=dst, storage_options=options)


def _manual(host: BenchHost, fs: s3fs.S3FileSystem, options: dict[str, Any], work: Path, src: str, dst: str) -> None:
    out, back, key = work / f"{src}.tar.zst", work / f"{src}-back.tar.zst", f"{BUCKET}/manual/{src}.tar.zst"
    host.check("container", "checkpoint", "--export", str(out), "--compress", "zstd", src)
    fs.put_file(str(out), key)
    fs.get_file(key, str(back))
    host.check("container", "restore", "--import", str(back), "--name", dst)
    out.unlink()
    back.unlink()


def run(host: BenchHost, p: Params, options: dict[str, Any]) -> S3Data:
    fs = s3fs.S3FileSystem(**options)
    work = p.work / "s3-manual"
    work.mkdir(parents=True, exist_ok=True)
    data = S3Data()
    for rep in range(p.reps):
        f, q = (host.start_workload(unique(k), p) for k in ("tf", "tp"))
        runs = [(data.ferry, _ferry, f), (data.manual, _manual, q)]
        restored = []
        for sink, fn, src in runs if rep % 2 == 0 else runs[::-1]:
            restored.append(unique("u"))
            start = time.perf_counter()
            fn(host, fs, options, work, src, restored[-1])
            sink.append(time.perf_counter() - start)
        host.remove(f, q, *restored)
        print(f"  s3 rep {rep + 1}/{p.reps}: ferry {data.ferry[-1]:.2f} s, manual {data.manual[-1]:.2f} s")
    return data

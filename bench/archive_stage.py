"""Benchmark 5: the archive stage alone, ferry's tar+zstd vs `tar -c | zstd -3 -T0`.

Same input directory for both. ferry is measured twice: ArchiveWriter over the directory, and
tasks.archive.build_archive over the same data as Podman's uncompressed dump.tar (which is what
the stage reads in a real snapshot).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Params
from bench.datagen import write_dir
from ferry.archive.manifest import ContainerRef, Manifest, Source
from ferry.archive.writer import ArchiveWriter
from ferry.runtime import CheckpointStats, ContainerInfo
from tasks.archive import build_archive
from tasks.dump import DumpResult
from tasks.inspect import Subject
from tasks.rootfs_diff import DiffResult

INFO = ContainerInfo("0" * 64, "bench", "running", 1, "f" * 64, "bench", "")


@dataclass
class ArchiveData:
    input_bytes: int = 0
    baseline: list[float] = field(default_factory=list)
    writer: list[float] = field(default_factory=list)
    stage: list[float] = field(default_factory=list)
    baseline_out: int = 0
    ferry_out: int = 0


def ferry_writer(src: Path, out: Path) -> int:
    with out.open("wb") as sink:
        writer = ArchiveWriter(sink, "zstd")
        with writer:
            for child in sorted(src.iterdir()):
                writer.add_path(child, child.name)
            writer.write_manifest(Manifest(ContainerRef("bench", INFO.id), Source(), "stop", "2026-01-01T00:00:00Z"))
    assert writer.digest is not None
    return writer.digest.size


def ferry_stage(dump_tar: Path) -> int:
    dumped = DumpResult(dump_tar, False, CheckpointStats(), "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    result = build_archive(Subject(INFO, Source()), dumped, DiffResult(None, None, 0, 0, 0))
    size = result.digest.size
    result.path.unlink()
    return size


def baseline(src: Path, out: Path) -> int:
    cmd = f"set -o pipefail; tar -C '{src}' -cf - . | zstd -3 -T0 -q -f -o '{out}'"
    subprocess.run(["bash", "-c", cmd], check=True)
    return out.stat().st_size


def run(p: Params) -> ArchiveData:
    work = p.work / "archive-stage"
    shutil.rmtree(work, ignore_errors=True)
    src, stage_dir = work / "src", work / "stage"
    stage_dir.mkdir(parents=True)
    data = ArchiveData(input_bytes=write_dir(src, p.archive))
    subprocess.run(["tar", "-C", str(src), "-cf", str(stage_dir / "dump.tar"), "."], check=True)
    for rep in range(p.reps):
        runs = [
            ("baseline", lambda: baseline(src, work / "base.tar.zst")),
            ("writer", lambda: ferry_writer(src, work / "ferry.tar.zst")),
            ("stage", lambda: ferry_stage(stage_dir / "dump.tar")),
        ]
        for who, fn in runs if rep % 2 == 0 else runs[::-1]:
            start = time.perf_counter()
            size = fn()
            getattr(data, who).append(time.perf_counter() - start)
            if who == "baseline":
                data.baseline_out = size
            elif who == "writer":
                data.ferry_out = size
        print(f"  archive rep {rep + 1}/{p.reps}: tar|zstd {data.baseline[-1]:.2f} s, ferry {data.writer[-1]:.2f} s")
    shutil.rmtree(work, ignore_errors=True)
    return data

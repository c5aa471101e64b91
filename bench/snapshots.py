"""Benchmarks 1, 4 and 7: snapshots to a local store, frozen time, Prefect's overhead.

Per repetition three identical containers run the seeded workload: one for ferry's flow, one
for Podman's own export, one for ferry's stage functions called directly (no Prefect).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import flows.snapshot as snapshot_flow
from bench.common import BenchHost, Params, timed, unique
from ferry.report import Timings
from ferry.staging import new_run_dir, remove_run_dir
from storage.ref import StoreRef
from storage.store import ArchiveStore
from tasks.archive import build_archive
from tasks.dump import ArchiveJob, dump
from tasks.freeze import frozen
from tasks.inspect import inspect
from tasks.publish import publish
from tasks.rootfs_diff import rootfs_diff


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def thaw_ms(store: str, url: str, timings: Timings) -> float:
    """The flow's frozen window: its rootfs-diff stage plus its dump stage until the thaw (the
    manifest's timestamps; the dump stage goes on streaming the archive after it)."""
    [entry] = [e for e in ArchiveStore(store).archives() if e.url == url]
    times = entry.sidecar.manifest.timestamps
    return (
        1000 * timings.seconds["rootfs-diff"]
        + (_when(times["thawed"]) - _when(times["dump_started"])).total_seconds() * 1000
    )


class RecordedTimings(Timings):
    """The flow's own per-stage timings, kept for the benchmark (the flow publishes them only
    as a markdown artifact)."""

    last: ClassVar[Timings | None] = None

    def __init__(self) -> None:
        super().__init__()
        RecordedTimings.last = self


@dataclass
class SnapData:
    ferry_wall: list[float] = field(default_factory=list)
    podman_wall: list[float] = field(default_factory=list)
    ferry_bytes: list[float] = field(default_factory=list)
    podman_bytes: list[float] = field(default_factory=list)
    frozen: dict[str, list[float]] = field(default_factory=dict)  # milliseconds
    stage_sum: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    plain_wall: list[float] = field(default_factory=list)
    plain_stages: list[dict[str, float]] = field(default_factory=list)
    archives: list[tuple[str, Path]] = field(default_factory=list)  # (ferry URL, Podman export)

    def add_frozen(self, key: str, ms: float) -> None:
        self.frozen.setdefault(key, []).append(ms)


def criu_frozen_ms(stdout: str) -> float:
    stats = json.loads(stdout)["container_statistics"][0]
    return float(stats["criu_statistics"]["frozen_time"]) / 1000


def podman_checkpoint(host: BenchHost, name: str, out: Path, *, leave_running: bool) -> float:
    """Podman's own export (with the rootfs diff), zstd; returns CRIU's frozen time in ms."""
    args = ["container", "checkpoint", "--export", str(out), "--compress", "zstd", "--print-stats"]
    return criu_frozen_ms(host.check(*args, *(["--leave-running"] if leave_running else []), name))


def plain_snapshot(name: str, store: str) -> tuple[Timings, float]:
    """ferry's snapshot stages called directly, without Prefect; returns timings and the
    cgroup-frozen window (freeze to the dump's thaw, once CRIU is done) in ms."""
    t = Timings()
    staging = new_run_dir("snapshot", name)
    ref = StoreRef(store)
    with t("inspect"):
        subject = inspect(name, ref)
    with frozen(subject.info) as knob:
        frozen_at = datetime.now(UTC)
        with t("rootfs-diff"):
            diff = rootfs_diff(subject.info, staging)
        with t("dump"):  # the archive streams into the store during the dump
            dumped = dump(subject.info, staging, False, job=ArchiveJob(subject, diff, "zstd", ref), knob=knob)
    window = (_when(dumped.thawed) - frozen_at).total_seconds() * 1000
    with t("archive"):
        archive = build_archive(subject, dumped, diff, "zstd", ref)
    with t("publish"):
        publish(archive, ref)
    remove_run_dir(staging)
    return t, window


def run(host: BenchHost, p: Params, store: str) -> SnapData:
    snapshot_flow.Timings = RecordedTimings  # type: ignore[misc]
    exports = p.work / "exports"
    exports.mkdir(parents=True, exist_ok=True)
    data = SnapData()
    for rep in range(p.reps):
        f, q, n = (host.start_workload(unique(k), p) for k in ("sf", "sp", "sn"))
        # leave-running first (the containers go on), then stop mode on the same containers
        lr = snapshot_flow.snapshot(container=f, to=store, leave_running=True)
        data.add_frozen("ferry leave-running", lr.frozen_ms)
        data.add_frozen(
            "podman leave-running", podman_checkpoint(host, q, exports / f"{q}-lr.tar.zst", leave_running=True)
        )

        def ferry_stop(f: str = f) -> snapshot_flow.SnapshotResult:
            return snapshot_flow.snapshot(container=f, to=store)

        def podman_stop(q: str = q) -> float:
            return podman_checkpoint(host, q, exports / f"{q}.tar.zst", leave_running=False)

        runs = [("ferry", ferry_stop), ("podman", podman_stop)]
        for who, fn in runs if rep % 2 == 0 else runs[::-1]:
            wall, out = timed(fn)
            if who == "ferry":
                assert isinstance(out, snapshot_flow.SnapshotResult)
                data.ferry_wall.append(wall)
                data.ferry_bytes.append(out.archive_bytes)
                data.add_frozen("ferry stop", out.frozen_ms)
                timings = RecordedTimings.last
                assert timings is not None
                data.stages.append(dict(timings.seconds))
                data.stage_sum.append(sum(timings.seconds.values()))
                data.add_frozen("ferry window (flow: rootfs-diff + dump until thaw)", thaw_ms(store, out.url, timings))
                data.archives.append((out.url, exports / f"{q}.tar.zst"))
            else:
                assert isinstance(out, float)
                data.podman_wall.append(wall)
                data.podman_bytes.append((exports / f"{q}.tar.zst").stat().st_size)
                data.add_frozen("podman stop", out)
        start = time.perf_counter()
        timings, window = plain_snapshot(n, store)
        data.plain_wall.append(time.perf_counter() - start)
        data.plain_stages.append(dict(timings.seconds))
        data.add_frozen("ferry window (stages: freeze to thaw)", window)
        (exports / f"{q}-lr.tar.zst").unlink(missing_ok=True)
        host.remove(f, q, n)
        print(
            f"  snapshot rep {rep + 1}/{p.reps}: ferry {data.ferry_wall[-1]:.2f} s, podman {data.podman_wall[-1]:.2f} s"
        )
    return data

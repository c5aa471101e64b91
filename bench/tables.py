"""Turn the raw measurements into report tables (baseline, ferry, ratio, target, met?)."""

from __future__ import annotations

import statistics

from bench.archive_stage import ArchiveData
from bench.cli_rows import CliData
from bench.common import MIB, Row, Table, median, mib, secs
from bench.migration import MigrationData
from bench.restores import RestoreData
from bench.rss import RssResult
from bench.s3bench import S3Data
from bench.snapshots import SnapData


def _ratio_row(label: str, base: list[float], ferry: list[float], target: float, fmt: str = "s") -> Row:
    ratio = median(ferry) / median(base)
    show = secs if fmt == "s" else (lambda v: mib(median(v)))
    return Row(label, show(base), show(ferry), ratio, f"<= {target:g}x", ratio <= target)


def snapshot_table(d: SnapData) -> Table:
    return Table("1. Snapshot to a local store (stop mode)", "Baseline: `podman container checkpoint --export "
                 "--compress zstd` (Podman's own rootfs diff included) on an identical container.", [
        _ratio_row("wall time", d.podman_wall, d.ferry_wall, 0.8),
        _ratio_row("archive size", d.podman_bytes, d.ferry_bytes, 1.0, fmt="b"),
    ])  # fmt: skip


def restore_table(d: RestoreData) -> Table:
    return Table("2. Restore from a local store", "ferry: the restore flow (sidecar, receive: one pass from the store "
                 "to the tar Podman imports, `podman container restore --import`). "
                 "Baseline: `podman container restore --import`.", [
        _ratio_row("wall time vs podman import of the same (ferry) archive", d.podman_same, d.ferry, 0.8),
        _ratio_row("wall time vs podman import of Podman's own export", d.podman_own, d.ferry, 0.8),
    ])  # fmt: skip


def s3_table(d: S3Data) -> Table:
    return Table("3. Snapshot + restore through S3 (moto on loopback)", "Baseline: podman export (zstd) -> "
                 "s3fs put -> s3fs get -> podman import.", [
        _ratio_row("wall time, snapshot + restore", d.manual, d.ferry, 0.7),
    ])  # fmt: skip


def frozen_table(d: SnapData) -> Table:
    f = {k: median(v) for k, v in d.frozen.items()}
    rows = [
        Row(f"CRIU frozen_time, {mode}", f"{f[f'podman {mode}']:.0f} ms", f"{f[f'ferry {mode}']:.0f} ms",
            f[f"ferry {mode}"] / f[f"podman {mode}"], "report", None)
        for mode in ("stop", "leave-running")
    ]  # fmt: skip
    for key in ("ferry window (flow: rootfs-diff + dump until thaw)", "ferry window (stages: freeze to thaw)"):
        rows.append(Row(key, f"{f['podman stop']:.0f} ms (CRIU, stop)", f"{f[key]:.0f} ms",
                        f[key] / f["podman stop"], "report", None))  # fmt: skip
    return Table("4. Frozen time", "From `--print-stats` (CRIU's frozen_time; ferry's SnapshotResult.frozen_ms). "
                 "ferry freezes the cgroup itself before the rootfs diff and CRIU's dump, so CRIU's number "
                 "misses the part before CRIU starts; the window rows measure freeze to thaw.", rows)  # fmt: skip


def prefect_table(d: SnapData) -> Table:
    overhead = [w - s for w, s in zip(d.ferry_wall, d.stage_sum, strict=True)]
    stages = sorted({k for s in d.stages for k in s})
    per_stage = ", ".join(f"{k} {median([s.get(k, 0.0) for s in d.stages]):.2f} s" for k in stages)
    plain = ", ".join(f"{k} {median([s.get(k, 0.0) for s in d.plain_stages]):.2f} s" for k in stages)
    return Table("7. Prefect overhead (snapshot, stop mode)", f"Flow stages (median): {per_stage}. "
                 f"The same stage functions called directly: {plain}.", [
        Row("flow wall minus sum of stage times", "—", secs(overhead), median(overhead) / median(d.ferry_wall),
            "report (ratio: share of flow wall)", None),
        Row("flow wall vs stage functions without Prefect", secs(d.plain_wall), secs(d.ferry_wall),
            median(d.ferry_wall) / median(d.plain_wall), "report", None),
    ])  # fmt: skip


def archive_table(d: ArchiveData) -> Table:
    def tput(values: list[float]) -> float:
        return d.input_bytes / median(values) / MIB

    base = tput(d.baseline)
    rows = [
        Row(label, f"{base:.0f} MiB/s", f"{tput(v):.0f} MiB/s", tput(v) / base, ">= 0.9x", tput(v) / base >= 0.9)
        for label, v in (("ArchiveWriter over the directory", d.writer), ("build_archive over dump.tar", d.stage))
    ]
    rows.append(Row("output size", mib(d.baseline_out), mib(d.ferry_out), d.ferry_out / d.baseline_out,
                    "report", None))  # fmt: skip
    return Table("5. Archive stage alone (throughput)", f"Baseline: `tar -c | zstd -3 -T0` on the same "
                 f"{d.input_bytes / MIB:.0f} MiB directory (half pseudo-random, half text).", rows)  # fmt: skip


def rss_table(results: list[RssResult]) -> Table:
    first = results[0].hwm_kib["receive"]
    rows = []
    for r in results:
        peak = r.hwm_kib["receive"]
        stages = ", ".join(f"{k} {v / 1024:.0f}" for k, v in r.hwm_kib.items())
        rows.append(Row(f"{r.size / MIB:.0f} MiB archive input (VmHWM after: {stages} MiB)",
                        f"{r.hwm_kib['imports'] / 1024:.0f} MiB after imports", f"{peak / 1024:.0f} MiB",
                        peak / first, "<= 200 MiB, flat", peak <= 200 * 1024))  # fmt: skip
    return Table("6. Peak RSS (archive -> upload to moto S3 -> receive, one process)",
                 "Ratio: peak relative to the smallest size (flat = 1.0x).", rows)  # fmt: skip


def _abs_row(label: str, base: list[float], ferry: list[float], limit_s: float) -> Row:
    ratio = median(ferry) / median(base)
    return Row(label, secs(base), secs(ferry), ratio, f"<= {limit_s:g} s", median(ferry) <= limit_s)


def cli_table(d: CliData) -> Table:
    return Table("8. Tiny container through the CLI", "A busybox `sleep` container; each command a fresh `ferry` "
                 "process in README's default mode (no PREFECT_API_URL: the CLI's local background Prefect server; "
                 "the flow commands run by ferry's resident process; both started by an uncounted warm-up). "
                 "Baselines: `podman container checkpoint --export --compress zstd` and `podman container restore "
                 "--import` of an identical container. The target is absolute (ratio shown for reference).", [
        _abs_row("`ferry snapshot` (stop mode)", d.podman_checkpoint, d.ferry_snapshot, 1.5),
        _abs_row("`ferry restore`", d.podman_restore, d.ferry_restore, 1.5),
        Row("`ferry snapshot`, FERRY_RESIDENT=off (report)", "—", secs(d.alone_snapshot), None, "report", None),
        Row("`ferry restore`, FERRY_RESIDENT=off (report)", "—", secs(d.alone_restore), None, "report", None),
        Row("`ferry verify` (no flow, no Prefect import)", "—", secs(d.ferry_verify), None, "report", None),
    ])  # fmt: skip


def migration_table(d: MigrationData) -> Table:
    return Table("9. Migration downtime (tiny container, two hosts' Prefect workers)", "ferry: the `ferry-migrate` "
                 "deployment (prefect.yaml) on a real Prefect server, one process worker per host with Prefect's "
                 "default worker settings, a `file://` store; after an uncounted warm-up migration. Baseline: "
                 "`podman container checkpoint --export` on the source, `podman container restore --import` on "
                 "the target. Downtime: Podman's checkpoint event on the source to its restore event on the target.", [
        _ratio_row("downtime", d.manual, d.ferry, 3.0),
        Row("whole migration run (ferry, report)", "—", secs(d.ferry_total), None, "report", None),
        Row(f"downtime by task run (median s inside the downtime): {_spans(d.spans)}", "—", "—", None, "report",
            None),
    ])  # fmt: skip


def _spans(spans: list[dict[str, float]]) -> str:
    names = sorted({name for s in spans for name in s})
    return ", ".join(f"{n} {statistics.median(s.get(n, 0.0) for s in spans):.2f}" for n in names) or "none recorded"

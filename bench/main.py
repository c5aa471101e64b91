"""Run the benchmarks and write bench/results.md. Use bench/run, which sets the host up first.

Usage: python -m bench.main [--mem MiB] [--disk MiB] [--reps N] [--archive MiB] [--rss MiB,MiB,...]
                    [--only snapshot,restore,s3,cli,migrate,archive,rss] [--out bench/results.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path

from bench.common import MIB, Params, Table
from bench.report import write
from tests.servers import moto_server

ALL = ("snapshot", "restore", "s3", "cli", "migrate", "archive", "rss")


def parse() -> tuple[Params, set[str], Path]:
    ap = argparse.ArgumentParser(description="ferry benchmarks (see bench/README.md)")
    ap.add_argument("--mem", type=int, default=256, help="MiB the workload holds in memory")
    ap.add_argument("--disk", type=int, default=128, help="MiB of rootfs changes")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--archive", type=int, default=512, help="MiB for the archive-stage bench")
    ap.add_argument("--rss", default="256,1024,2048", help="archive sizes (MiB) for the peak-RSS bench")
    ap.add_argument("--only", default=",".join(ALL))
    ap.add_argument("--work", default="/var/tmp/ferry-bench")
    ap.add_argument("--hog", default="/var/tmp/ferry-bench-hog")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.md")))
    a = ap.parse_args()
    only = set(a.only.split(","))
    if a.reps < 1 or not only <= set(ALL):
        ap.error(f"--reps must be >= 1 and --only a subset of {','.join(ALL)}")
    sizes = tuple(int(s) * MIB for s in a.rss.split(",") if s)
    p = Params(Path(a.work), Path(a.hog), a.mem * MIB, a.disk * MIB, a.reps, a.archive * MIB, sizes)
    return p, only, Path(a.out)


def environment(p: Params) -> None:
    os.environ.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="WARNING",
        FERRY_STAGING=str(p.work / "staging"),
        FERRY_PROGRESS_MIN_BYTES=str(1 << 62),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - moto's; never a real credential
        AWS_DEFAULT_REGION="us-east-1",
    )


def signing_keys(folder: Path) -> None:
    """Archives are signed and restores check them, as in production: a key pair for this run."""
    from ferry.keygen import keygen

    pair = keygen(folder, "ferry@bench")
    os.environ.update(FERRY_SIGNING_KEY=str(pair.private), FERRY_TRUSTED_KEYS=str(pair.public))


def container_benches(p: Params, only: set[str], tables: list[Table]) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from bench import cli_rows, migration, restores, s3bench, snapshots
    from bench import tables as t
    from bench.common import IMAGE, bench_host

    with prefect_test_harness(server_startup_timeout=180), bench_host(p.work, p.hog) as host:
        os.environ["FERRY_PODMAN"] = host.env_value
        store = f"file://{p.work}/store"
        if only & {"snapshot", "restore"}:
            print("snapshots (1, 4, 7) ...", flush=True)
            snaps = snapshots.run(host, p, store)
            tables += [t.snapshot_table(snaps), t.frozen_table(snaps), t.prefect_table(snaps)]
            if "restore" in only:
                print("restores (2) ...", flush=True)
                tables.append(t.restore_table(restores.run(host, snaps.archives)))
        if "s3" in only:
            print("S3 (3) ...", flush=True)
            with moto_server() as s3:
                s3.make_bucket(s3bench.BUCKET)
                options = {"client_kwargs": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"}}
                tables.append(t.s3_table(s3bench.run(host, p, options)))
        if "cli" in only:
            print("tiny container through the CLI (8) ...", flush=True)
            tables.append(t.cli_table(cli_rows.run(host, p, IMAGE)))
        if "migrate" in only:
            print("migration downtime (9) ...", flush=True)
            tables.append(t.migration_table(migration.run(host, p)))


def sample_load(every_s: float = 5.0) -> list[float]:
    """The 1-minute load average, sampled every few seconds for the rest of the run (the machine
    may be shared: results.md says so)."""
    samples = [os.getloadavg()[0]]

    def loop() -> None:
        while True:
            time.sleep(every_s)
            samples.append(os.getloadavg()[0])

    threading.Thread(target=loop, daemon=True).start()
    return samples


def main() -> None:
    p, only, out = parse()
    environment(p)
    shutil.rmtree(p.work, ignore_errors=True)
    p.work.mkdir(parents=True)
    signing_keys(p.work / "keys")
    started = time.monotonic()
    tables: list[Table] = []
    load = sample_load()
    if only & {"snapshot", "restore", "s3", "cli", "migrate"}:
        container_benches(p, only, tables)
    if "archive" in only:
        from bench import archive_stage
        from bench import tables as t

        print("archive stage (5) ...", flush=True)
        tables.append(t.archive_table(archive_stage.run(p)))
    if "rss" in only:
        from bench import rss
        from bench import tables as t

        print("peak RSS (6) ...", flush=True)
        with moto_server() as s3:
            s3.make_bucket("ferry-rss")
            options = {"client_kwargs": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"}}
            tables.append(t.rss_table(rss.run(p, "s3://ferry-rss/rss", options)))
    tables.sort(key=lambda table: table.title)
    write(out, p, tables, time.monotonic() - started, load)
    shutil.rmtree(p.work, ignore_errors=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

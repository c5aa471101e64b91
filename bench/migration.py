"""Benchmark 9: migration downtime of a tiny container between two "hosts" (two private Podman
stores on this machine).

ferry: the `ferry-migrate/<source>` deployment from prefect.yaml, run on a real Prefect server
with one process worker per host started as README shows (Prefect's default worker settings:
they decide how soon the target's worker picks the restore up). Baseline, by hand: `podman
container checkpoint --export` on the source, `podman container restore --import` on the target.
Downtime: from Podman's checkpoint event on the source to its restore event on the target, both
read back with `podman events` (ferry freezes the container a little earlier, for its rootfs
diff: see table 4).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.common import IMAGE, BenchHost, Params, unique
from tests.helpers import ULIMITS
from tests.prefect_stack import prefect_stack

TINY = ("sleep", "1000000")
#: Prefect's defaults (tests/prefect_stack.py shortens them for the test suite; README's workers do not)
DEFAULT_WORKER = {"PREFECT_WORKER_QUERY_SECONDS": "10", "PREFECT_WORKER_PREFETCH_SECONDS": "10"}


@dataclass
class MigrationData:
    ferry: list[float] = field(default_factory=list)
    manual: list[float] = field(default_factory=list)
    ferry_total: list[float] = field(default_factory=list)  # the whole deployment run
    #: per migration: seconds of each Prefect task run inside the downtime (clipped to it)
    spans: list[dict[str, float]] = field(default_factory=list)


def event_time(host: BenchHost, status: str, name: str, since: str) -> datetime:
    out = host.check("events", "--stream=false", "--since", since, "--format", "json")
    times = [
        e["Time"]
        for e in (json.loads(line) for line in out.splitlines() if line.strip())
        if e.get("Status") == status and e.get("Name") == name
    ]
    if not times:
        raise RuntimeError(f"no {status} event for {name}")
    stamp = times[-1]
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def downtime_spans(api: str, since: str, start: datetime, end: datetime, migration: object) -> dict[str, float]:
    """Where the downtime went: each task run of the snapshot and the restore (not the
    migration's own, which stand for those runs), the part of it between ``start`` and ``end``,
    summed by task name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime
    from prefect.settings import PREFECT_API_URL, temporary_settings

    after = TaskRunFilterStartTime(after_=datetime.fromisoformat(since))
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(start_time=after), limit=200)
    spans: dict[str, float] = {}
    for run in runs:
        if run.start_time is None or run.end_time is None or run.flow_run_id == migration:
            continue
        inside = (min(run.end_time, end) - max(run.start_time, start)).total_seconds()
        if inside > 0:
            name = run.name.rsplit("-", 1)[0]  # Prefect names a task run "<task>-<suffix>"
            spans[name] = spans.get(name, 0.0) + inside
    return spans


def now_iso() -> str:
    return datetime.now().astimezone().isoformat()


@contextmanager
def two_hosts(work: Path) -> Iterator[tuple[BenchHost, BenchHost]]:
    hosts = (BenchHost(Path("/var/tmp/fbm1")), BenchHost(Path("/var/tmp/fbm2")))
    for h in hosts:
        h.cleanup()
        shutil.rmtree(h.base, ignore_errors=True)
    try:
        yield hosts
    finally:
        for h in hosts:
            h.cleanup()
            subprocess.run(["umount", "-R", str(h.base / "root")], capture_output=True, check=False)
            shutil.rmtree(h.base, ignore_errors=True)


def run(source_image_host: BenchHost, p: Params) -> MigrationData:
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    work = p.work / "migration"
    work.mkdir(parents=True, exist_ok=True)
    store = f"file://{work}/store"
    data = MigrationData()
    image_tar = work / "image.tar"
    source_image_host.check("save", "-o", str(image_tar), IMAGE)
    with two_hosts(work) as (h1, h2), prefect_stack(work / "prefect") as stack:
        for h in (h1, h2):
            h.check("load", "-i", str(image_tar))
        for name in ("host1", "host2"):
            stack.deploy_host(name, store)
        for name, h in (("host1", h1), ("host2", h2)):
            stack.start_worker(name, work / f"worker-{name}.log", PATH=os.environ["PATH"],
                               FERRY_PODMAN=h.env_value, FERRY_STAGING=str(work / f"staging-{name}"),
                               **DEFAULT_WORKER)  # fmt: skip

        def ferry_move() -> None:
            c = unique("m")
            h1.check("run", "-d", "--name", c, *ULIMITS, IMAGE, *TINY)
            since = now_iso()
            with temporary_settings({PREFECT_API_URL: stack.api}):
                flow_run = run_deployment("ferry-migrate/host1", parameters={"container": c, "target_host": "host2"},
                                          timeout=1800, poll_interval=1)  # fmt: skip
            if not flow_run.state or not flow_run.state.is_completed():
                logs = "".join(p.read_text(errors="replace")[-3000:] for p in sorted(work.glob("worker-*.log")))
                raise RuntimeError(f"migration of {c} ended {flow_run.state}:\n{logs}")
            stopped, restored = event_time(h1, "checkpoint", c, since), event_time(h2, "restore", c, since)
            data.ferry.append((restored - stopped).total_seconds())
            data.spans.append(downtime_spans(stack.api, since, stopped, restored, flow_run.id))
            start, end = flow_run.start_time, flow_run.end_time
            if start and end:
                data.ferry_total.append((end - start).total_seconds())
            h2.remove(c)
            h1.remove(c)

        def manual_move() -> None:
            c = unique("n")
            h1.check("run", "-d", "--name", c, *ULIMITS, IMAGE, *TINY)
            since = now_iso()
            export = work / f"{c}.tar.zst"
            h1.check("container", "checkpoint", "--export", str(export), "--compress", "zstd", c)
            h2.check("container", "restore", "--import", str(export), "--name", c)
            down = event_time(h2, "restore", c, since) - event_time(h1, "checkpoint", c, since)
            data.manual.append(down.total_seconds())
            export.unlink()
            h2.remove(c)
            h1.remove(c)

        ferry_move()  # warm-up: the first run on a fresh server and workers is not counted
        data.ferry.clear()
        data.ferry_total.clear()
        for rep in range(p.reps):
            for fn in [ferry_move, manual_move] if rep % 2 == 0 else [manual_move, ferry_move]:
                fn()
            print(f"  migration rep {rep + 1}/{p.reps}: ferry {data.ferry[-1]:.2f} s, manual {data.manual[-1]:.2f} s")
    return data

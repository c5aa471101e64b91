"""`ferry migrate`: it runs the ferry-migrate deployment and follows it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.e2e.deployments.lab import Deployed, wait_final
from tests.helpers import wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.server]


def _ferry_migrate(deployed: Deployed, *args: str) -> subprocess.CompletedProcess[str]:
    env = deployed.stack.env()
    env.pop("FERRY_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", "migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def test_ferry_migrate_runs_the_deployment_and_follows_it(deployed: Deployed) -> None:
    h1, h2 = deployed.host1, deployed.host2
    h1.run_workload("climover")
    counted = h1.counter("climover")

    proc = _ferry_migrate(deployed, "climover", "--to-host", "host2", "--from-host", "host1", "--json")
    (deployed.logs / "ferry-migrate.txt").write_text(proc.stderr + proc.stdout)  # README's example

    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{deployed.worker_logs()}"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("ferry migrate: started ferry-migrate/host1 run "), proc.stderr
    # Each step's states in the order they came (a short one may pass between two polls). The
    # restore, started first, goes on as soon as the archive is published, so it may complete
    # before the snapshot run has ended; removing the source's copy comes after both.
    steps = [line.split("   ", 1)[1] for line in lines if line.startswith("ferry migrate:   ")]
    completed = [s for s in steps if s.endswith(": Completed")]
    assert sorted(completed[:2]) == ["ferry-restore/host2: Completed", "ferry-snapshot/host1: Completed"], steps
    assert completed[2:] == ["ferry-source/host1: Completed"], steps
    assert steps.index("ferry-restore/host2: Running") < steps.index("ferry-snapshot/host1: Running"), steps
    assert "ferry migrate: migration: Running" in lines
    assert lines.index("ferry migrate: migration: Running") < lines.index("ferry migrate: migration: Completed")
    done = _valid_json(proc.stdout, "migrate")
    assert done["archive"].startswith(deployed.store + "/climover/"), done
    assert (done["container"], done["from_host"], done["to_host"], done["state"]) == (
        "climover",
        "host1",
        "host2",
        "Completed",
    )
    assert h1.state("climover") == "absent" and h2.state("climover") == "running"
    wait_for(lambda: h2.counter("climover") > counted + 5, what="the migrated container to count on")


def _valid_json(stdout: str, schema_name: str) -> dict[str, Any]:
    from importlib import resources

    import jsonschema

    document: dict[str, Any] = json.loads(stdout)
    schema = json.loads((resources.files("ferry.cli") / "schemas" / f"{schema_name}.json").read_text())
    jsonschema.validate(document, schema)
    return document


def test_ferry_migrate_exits_non_zero_when_the_migration_rolls_back(deployed: Deployed) -> None:
    h1, h2 = deployed.host1, deployed.host2
    h1.run_workload("cliback")
    deployed.inject("host2", "restore")
    try:
        proc = _ferry_migrate(deployed, "cliback", "--to-host", "host2", "--from-host", "host1", "--json")
    finally:
        deployed.inject("host2")
    (deployed.logs / "ferry-migrate-rollback.txt").write_text(proc.stderr + proc.stdout)

    assert proc.returncode == 1, f"{proc.stdout}\n{proc.stderr}"
    error = _valid_json(proc.stdout, "error")["error"]  # --json: the failure as a document on stdout
    assert error["area"] == "migrate" and error["exit_code"] == 1 and "running there again" in error["message"]
    assert "ferry migrate:   ferry-source/host1: Completed" in proc.stderr.splitlines()  # the rollback
    assert "ferry migrate failed (migrate):" in proc.stderr and "running there again" in proc.stderr
    assert "Flow run encountered an exception" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert h2.state("cliback") == "absent" and h1.state("cliback") == "running"


def test_ferry_migrate_interrupted_stops_following_and_the_migration_goes_on(deployed: Deployed) -> None:
    h1, h2 = deployed.host1, deployed.host2
    h1.run_workload("cliint")
    env = deployed.stack.env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry.cli", "migrate", "cliint", "--to-host", "host2", "--from-host", "host1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("ferry migrate: started ferry-migrate/host1 run "), first
    run_id = uuid.UUID(first.rsplit("(", 1)[1].rstrip(")\n"))
    for line in proc.stderr:  # wait until the migration runs, then press Ctrl-C
        if line.strip() == "ferry migrate: migration: Running":
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)

    assert proc.returncode == 130, err
    assert f"the migration goes on in Prefect: `prefect flow-run inspect {run_id}`" in err, err
    assert "Traceback" not in err and out == ""
    final = wait_final(deployed, run_id)
    assert final.state.is_completed(), final.state
    assert h1.state("cliint") == "absent" and h2.state("cliint") == "running"


def test_ferry_migrate_without_a_prefect_server_or_deployment_says_so(deployed: Deployed) -> None:
    env = deployed.stack.env()
    env.pop("PREFECT_API_URL")
    proc = subprocess.run(
        [sys.executable, "-m", "ferry.cli", "migrate", "x", "--to-host", "host2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2 and "set PREFECT_API_URL" in proc.stderr, proc.stderr
    proc = _ferry_migrate(deployed, "x", "--to-host", "host2", "--from-host", "nohost")
    assert proc.returncode == 2 and "no deployment ferry-migrate/nohost" in proc.stderr, proc.stderr

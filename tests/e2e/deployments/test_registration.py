"""Deployments as registered from prefect.yaml, and the Prefect UI showing a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.deployments.lab import Deployed

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.server]


def test_deploy_all_registers_typed_deployments_with_a_nightly_schedule(deployed: Deployed) -> None:
    with deployed.client() as client:
        names = {f"{client.read_flow(d.flow_id).name}/{d.name}" for d in client.read_deployments()}
        nightly = client.read_deployment_by_name("ferry-nightly/host1")
        migrate = client.read_deployment_by_name("ferry-migrate/host1")
        restore = client.read_deployment_by_name("ferry-restore/host1")
        source = client.read_deployment_by_name("ferry-source/host1")
    for flow in ("ferry-snapshot", "ferry-restore", "ferry-source", "ferry-migrate", "ferry-nightly"):
        assert {f"{flow}/host1", f"{flow}/host2"} <= names
    assert nightly.schedules and nightly.schedules[0].schedule.cron == "0 2 * * *"
    assert nightly.schedules[0].schedule.timezone == "UTC"
    # The store is the Prefect Variable ferry-store, read at run time, not fixed in the deployments.
    assert "to" not in nightly.parameters and "via" not in migrate.parameters
    assert nightly.parameters["retention"] == {"keep": 10}
    assert "host:host1" in nightly.tags and "host:host1" in migrate.tags
    schema = migrate.parameter_openapi_schema["properties"]
    assert schema["compress"]["enum"] == ["zstd", "gzip", "none"]
    assert "description" in schema["via"] and schema["timeout_minutes"]["minimum"] == 1
    for deployment in (migrate, restore):  # signatures are checked unless the operator says otherwise
        unsigned = deployment.parameter_openapi_schema["properties"]["allow_unsigned"]
        assert unsigned["default"] is False and "keyring" in unsigned["description"]
    assert "Retention" in json.dumps(nightly.parameter_openapi_schema)
    # Two nightly runs never overlap (a new one is cancelled); migrations out of a host queue.
    assert nightly.global_concurrency_limit and nightly.global_concurrency_limit.limit == 1
    assert nightly.concurrency_options and nightly.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert migrate.global_concurrency_limit and migrate.global_concurrency_limit.limit == 1
    assert migrate.concurrency_options and migrate.concurrency_options.collision_strategy == "ENQUEUE"
    assert "ferry-internal" in source.tags and "INTERNAL" in (source.description or "")
    assert "ferry-internal" not in migrate.tags


def test_prefect_ui_shows_the_run_and_the_deployment(deployed: Deployed, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    deployed.host1.run_workload("ui-shown")
    run = deployed.run("ferry-snapshot/host1", container="ui-shown", to=deployed.store, leave_running=True)
    assert run.state.is_completed(), run.state
    with deployed.client() as client:
        deployment = client.read_deployment_by_name("ferry-snapshot/host1")

    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True, args=args
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{deployed.stack.ui}/runs/flow-run/{run.id}", wait_until="networkidle")
        page.get_by_text(run.name).first.wait_for(timeout=60_000)
        page.get_by_text("Completed").first.wait_for(timeout=60_000)
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("Snapshot of ui-shown").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "flow-run.png"))
        page.goto(f"{deployed.stack.ui}/deployments/deployment/{deployment.id}", wait_until="networkidle")
        page.get_by_text("ferry-snapshot").first.wait_for(timeout=60_000)
        page.get_by_text("host1").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "deployment.png"))
        browser.close()
    shutil.copy(tmp_path / "flow-run.png", deployed.logs / "flow-run.png")
    shutil.copy(tmp_path / "deployment.png", deployed.logs / "deployment.png")

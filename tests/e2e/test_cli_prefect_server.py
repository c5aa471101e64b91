"""The CLI without PREFECT_API_URL: the first flow command starts one local Prefect server in the
background and prints its UI address; later commands reuse it (same PID and URL, no second
announcement), and their runs are flow runs in that server, read back through Prefect's client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Host

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]


@pytest.fixture
def bare_env(host: Host, tmp_path: Path) -> Iterator[dict[str, str]]:
    """No Prefect server configured: a private PREFECT_HOME, no PREFECT_API_URL anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        FERRY_PODMAN=host.env_value,
        FERRY_STAGING=str(tmp_path / "staging"),
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    try:
        yield env
    finally:
        subprocess.run(
            [sys.executable, "-m", "ferry.cli.prefect_server", "stop"], env=env, capture_output=True, check=False
        )


def ferry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ferry.cli", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)


def server_status(env: dict[str, str]) -> dict[str, object]:
    argv = [sys.executable, "-m", "ferry.cli.prefect_server", "status"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


async def _runs(api: str) -> list[tuple[str, str]]:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api) as client:
        flows = {f.id: f.name for f in await client.read_flows()}
        return sorted((flows[r.flow_id], str(r.state_name)) for r in await client.read_flow_runs())


def test_two_commands_share_one_local_server_and_their_runs_are_in_it(
    host: Host, bare_env: dict[str, str], tmp_path: Path
) -> None:
    host.run_workload("a")
    host.run_workload("b")
    store = f"file://{tmp_path}/store"

    first = ferry(bare_env, "snapshot", "a", "--to", store, "--leave-running")
    assert first.returncode == 0, first.stderr
    assert "started a local Prefect server" in first.stderr
    started = server_status(bare_env)
    assert str(started["url"]).startswith("http://127.0.0.1:")
    assert str(started["url"]) in first.stderr
    assert started["prefect_home"] == str(Path(bare_env["PREFECT_HOME"]).resolve())

    second = ferry(bare_env, "snapshot", "b", "--to", store, "--leave-running")
    assert second.returncode == 0, second.stderr
    assert "started a local Prefect server" not in second.stderr
    assert server_status(bare_env) == started  # the same process, the same URL

    url = second.stdout.strip().splitlines()[-1]
    restored = ferry(bare_env, "restore", url, "--name", "b2")
    assert restored.returncode == 0, restored.stderr
    assert server_status(bare_env) == started
    assert host.state("b2") == "running"

    runs = asyncio.run(_runs(f"{started['url']}/api"))
    completed = [("ferry-restore", "Completed"), ("ferry-snapshot", "Completed"), ("ferry-snapshot", "Completed")]
    assert runs == completed, runs

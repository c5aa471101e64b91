"""The `ferry` command as an operator runs it: real processes, real Podman and CRIU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Host, env_with, wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]


@pytest.fixture
def cli_env(host: Host, prefect_harness: None, tmp_path: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    # Point the CLI at the harness's server so each call skips starting its own.
    return env_with(host, PREFECT_API_URL=str(PREFECT_API_URL.value()), FERRY_STAGING=str(tmp_path / "staging"))


def ferry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_snapshot_ls_verify_restore(host: Host, cli_env: dict[str, str], tmp_path: Path) -> None:
    host.run_workload("app")
    store = f"file://{tmp_path}/store"

    snap = ferry(cli_env, "snapshot", "app", "--to", store, "--leave-running", "--compress", "gzip")
    assert snap.returncode == 0, snap.stderr
    url = snap.stdout.strip().splitlines()[-1]
    assert url.startswith(store + "/app/") and url.endswith(".tar.gz")

    listing = ferry(cli_env, "ls", store)
    assert listing.returncode == 0, listing.stderr
    assert url in listing.stdout and "leave-running" in listing.stdout

    checked = ferry(cli_env, "verify", url)
    assert checked.returncode == 0, checked.stderr
    assert "verified against its manifest" in checked.stdout

    inspected = ferry(cli_env, "inspect", url, "--json")
    assert inspected.returncode == 0, inspected.stderr
    view = json.loads(inspected.stdout)
    assert view["container"]["name"] == "app" and view["verified"] is True
    assert view["command"][:2] == ["sh", "-c"] and any(p["comm"] == "sh" for p in view["processes"])

    restored = ferry(cli_env, "restore", url, "--name", "app-2")
    assert restored.returncode == 0, restored.stderr
    assert "app-2" in restored.stdout
    before = host.counter("app-2")
    wait_for(lambda: host.counter("app-2") > before, what="the restored copy to count")


def test_failures_exit_nonzero_with_an_operator_message(host: Host, cli_env: dict[str, str], tmp_path: Path) -> None:
    missing = ferry(cli_env, "snapshot", "ghost", "--to", f"file://{tmp_path}/store")
    assert missing.returncode == 1
    assert "no container 'ghost'" in missing.stderr
    assert "Traceback" not in missing.stderr

    absent = ferry(cli_env, "restore", f"file://{tmp_path}/store/none.tar.zst")
    assert absent.returncode == 1
    assert "no archive at" in absent.stderr
    assert "Traceback" not in absent.stderr

    bad_url = ferry(cli_env, "ls", "nosuchproto://x")
    assert bad_url.returncode == 2
    assert "nosuchproto" in bad_url.stderr


def test_network_options_and_a_name_copy_beside_its_original(
    host: Host, cli_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.e2e.test_network_state import ask_server, commands, echoed, run_echo

    snap_help = ferry(cli_env, "snapshot", "--help").stdout
    assert "--no-tcp-established" in snap_help and "--no-file-locks" in snap_help and "--allow-bind-mounts" in snap_help
    restore_help = ferry(cli_env, "restore", "--help").stdout
    for option in ("--tcp-established", "--tcp-close", "--file-locks", "--ignore-static-ip", "--ignore-static-mac"):
        assert option in restore_help, option
    assert "--publish" in restore_help and "default: on" in restore_help
    both = ferry(cli_env, "restore", f"file://{tmp_path}/none.tar.zst", "--tcp-established", "--tcp-close")
    assert both.returncode == 2 and "contradict" in both.stderr and "Traceback" not in both.stderr
    bad_port = ferry(cli_env, "restore", f"file://{tmp_path}/none.tar.zst", "--publish", "80:http")
    assert bad_port.returncode == 2 and "Podman's syntax" in bad_port.stderr

    run_echo(host, "echo")
    snap = ferry(cli_env, "snapshot", "echo", "--to", f"file://{tmp_path}/store", "--leave-running")
    assert snap.returncode == 0, snap.stderr
    url = snap.stdout.strip().splitlines()[-1]

    copy = ferry(cli_env, "restore", url, "--name", "echo-copy")

    assert copy.returncode == 0, copy.stderr
    # The copy's connection was restored closed; its server runs. The original's carries on.
    wait_for(
        lambda: not any(c.startswith("nc 127.0.0.1") for c in commands(host, "echo-copy")),
        what="the copy's client to see its connection closed",
    )
    assert ask_server(host, "echo-copy", "copy") == "copy"
    before = echoed(host, "echo")[-1]
    wait_for(lambda: echoed(host, "echo")[-1] > before + 5, what="the original's connection to carry on")
    assert any(c.startswith("nc 127.0.0.1") for c in commands(host, "echo"))


def test_a_bind_mount_is_refused_on_the_command_line(host: Host, cli_env: dict[str, str], tmp_path: Path) -> None:
    from tests.helpers import IMAGE, ULIMITS, WORKLOAD

    shared = tmp_path / "shared"
    shared.mkdir()
    host.podman("run", "-d", "--name", "app", *ULIMITS, "-v", f"{shared}:/shared", IMAGE, "sh", "-c", WORKLOAD)

    refused = ferry(cli_env, "snapshot", "app", "--to", f"file://{tmp_path}/store")

    assert refused.returncode == 1
    assert f"{shared} -> /shared" in refused.stderr and "named volume" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert host.state("app") == "running"

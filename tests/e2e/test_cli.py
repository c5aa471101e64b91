"""The `ferry` command as an operator runs it: real processes, real Podman and CRIU."""

from __future__ import annotations

import json
import os
import re
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
    # progress on stderr (a pipe here: a plain line as the stage starts and one as it ends)
    started, ended = checked.stderr.splitlines()[:2]
    assert started.startswith("verify started, ") and re.fullmatch(r"verify \S+ \S+ \S+ s .*/s", ended), checked.stderr
    assert "signed by ferry@tests" in checked.stdout and "UNSIGNED" not in snap.stderr + checked.stdout

    inspected = ferry(cli_env, "inspect", url, "--json")
    assert inspected.returncode == 4, inspected.stderr  # app still runs here: its name is taken
    view = json.loads(inspected.stdout)
    assert view["container"]["name"] == "app" and view["verified"] is True
    assert view["compatibility"]["name"]["ok"] is False
    assert view["command"][:2] == ["sh", "-c"] and any(p["comm"] == "sh" for p in view["processes"])

    restored = ferry(cli_env, "restore", url, "--name", "app-2")
    assert restored.returncode == 0, restored.stderr
    assert "app-2" in restored.stdout
    before = host.counter("app-2")
    wait_for(lambda: host.counter("app-2") > before, what="the restored copy to count")


def test_failures_exit_nonzero_with_an_operator_message(host: Host, cli_env: dict[str, str], tmp_path: Path) -> None:
    missing = ferry(cli_env, "snapshot", "ghost", "--to", f"file://{tmp_path}/store")
    assert missing.returncode == 3
    assert "no container 'ghost'" in missing.stderr
    assert "Traceback" not in missing.stderr

    absent = ferry(cli_env, "restore", f"file://{tmp_path}/store/none.tar.zst")
    assert absent.returncode == 3
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


def test_doctor_reports_the_signing_keys(host: Host) -> None:
    doctor = ferry(dict(os.environ, FERRY_PODMAN=host.env_value), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "ok   criu" in doctor.stdout
    assert "ok   signing: snapshots are signed; restores trust 1 key(s): ferry@tests" in doctor.stdout


def without_default_keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`ferry ARGS` on a host with no /etc/ferry keys, whatever this machine has there, and no key variables."""
    env = {k: v for k, v in env.items() if k not in ("FERRY_SIGNING_KEY", "FERRY_TRUSTED_KEYS")}
    code = (
        "import sys; from pathlib import Path; from ferry import keys; "
        "keys.DEFAULT_SIGNING_KEY = keys.DEFAULT_TRUSTED_KEYS = Path('/nonexistent/ferry-test'); "
        "from ferry.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_doctor_warns_without_keys(host: Host) -> None:
    doctor = without_default_keys(dict(os.environ, FERRY_PODMAN=host.env_value), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr  # a warning, not a failure
    assert "WARN signing: no signing key" in doctor.stdout and "no trusted keys" in doctor.stdout
    assert "fix: run `ferry keygen`" in doctor.stdout


def test_keygen_and_archives_from_other_hosts(host: Host, cli_env: dict[str, str], tmp_path: Path) -> None:
    """The operator's path: a new snapshot host makes a key; this host refuses its archives until
    the public key line keygen printed is in the keyring; unsigned archives need --allow-unsigned."""
    made = ferry(cli_env, "keygen", "--out", str(tmp_path / "src"), "--name", "ferry@src")
    assert made.returncode == 0, made.stderr
    line = next(x.strip() for x in made.stdout.splitlines() if "ssh-ed25519" in x)
    assert line.startswith("mkdir -p /etc/ferry && echo 'ssh-ed25519 ") and line.endswith(
        "' >> /etc/ferry/trusted-keys"
    )
    assert f"export FERRY_SIGNING_KEY={tmp_path / 'src' / 'signing.key'}" in made.stdout
    again = ferry(cli_env, "keygen", "--out", str(tmp_path / "src"))
    assert again.returncode == 2 and "never overwrites" in again.stderr

    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    src_env = dict(cli_env, FERRY_SIGNING_KEY=str(tmp_path / "src" / "signing.key"))
    url = ferry(src_env, "snapshot", "app", "--to", store, "--leave-running").stdout.strip().splitlines()[-1]

    refused = ferry(cli_env, "restore", url, "--name", "copy")
    assert refused.returncode == 4 and "Traceback" not in refused.stderr
    assert "ferry restore failed (archive)" in refused.stderr and "not in this host's keyring" in refused.stderr
    assert "FERRY_TRUSTED_KEYS" in refused.stderr and "--allow-unsigned" in refused.stderr
    checked = ferry(cli_env, "verify", url, "--allow-unsigned")
    assert checked.returncode == 0 and "NOT in this host's keyring" in checked.stdout + checked.stderr
    untrusted = ferry(cli_env, "inspect", url, "--json")
    assert untrusted.returncode == 4
    inspected = json.loads(untrusted.stdout)
    assert inspected["verified"] is False and "not in this host's keyring" in inspected["verification"]

    keyring = tmp_path / "trusted-keys"
    keyring.write_text(Path(cli_env["FERRY_TRUSTED_KEYS"]).read_text() + line.split("'")[1] + "\n")
    restored = ferry(dict(cli_env, FERRY_TRUSTED_KEYS=str(keyring)), "restore", url, "--name", "copy")
    assert restored.returncode == 0, restored.stderr
    assert host.state("copy") == "running"

    unsigned = without_default_keys(cli_env, "snapshot", "app", "--to", store, "--leave-running")
    assert unsigned.returncode == 0, unsigned.stderr
    assert "UNSIGNED" in unsigned.stderr and "--allow-unsigned" in unsigned.stderr
    url = unsigned.stdout.strip().splitlines()[-1]
    refused = ferry(cli_env, "restore", url, "--name", "copy2")
    assert refused.returncode == 4 and "The archive is not signed" in refused.stderr
    assert host.state("copy2") == "absent"
    allowed = ferry(cli_env, "restore", url, "--name", "copy2", "--allow-unsigned")
    assert allowed.returncode == 0, allowed.stderr
    assert "UNSIGNED" in allowed.stderr and host.state("copy2") == "running"

"""Network state on real Podman, runc and CRIU: a container holding an established TCP connection.

Inside the container a persistent echo server (busybox ``nc -ll -e cat``) listens on 8080 and a
client keeps one connection to it open, sending a number every 0.1 s and writing the echoes to
/data/echoed. A snapshot dumps the connection (``--tcp-established``, on by default); a
migration-style restore keeps it (the same client carries on counting), a ``ferry restore``
closes it (``tcp-close`` through the ``org.criu.config`` annotation): the client is gone, the
server runs and takes new clients.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from ferry.errors import CheckpointError, RestoreError
from flows.restore import restore
from flows.snapshot import snapshot
from tests.helpers import IMAGE, ULIMITS, Host, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]


def echo_workload(marker: str) -> str:
    # The trailing comment is in the command line of every shell of the container (subshells
    # are forks), so a test can look for leftover processes by it.
    return (
        "nc -ll -p 8080 -e cat & usleep 300000; "
        "(i=0; while :; do i=$((i+1)); echo $i; usleep 100000; done) | nc 127.0.0.1 8080 > /data/echoed & "
        f"wait # {marker}"
    )


def run_echo(host: Host, name: str, marker: str = "") -> None:
    host.podman("run", "-d", "--name", name, *ULIMITS, IMAGE, "sh", "-c", echo_workload(marker or name))
    wait_for(lambda: echoed(host, name)[-1:] >= [10], what=f"{name}'s client to get echoes")


def echoed(host: Host, name: str) -> list[int]:
    out = host.podman("exec", name, "cat", "/data/echoed", check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def commands(host: Host, name: str) -> list[str]:
    out = host.podman("top", name, "args").stdout.splitlines()[1:]
    return [line.strip() for line in out]


def ask_server(host: Host, name: str, text: str) -> str:
    """A new client: connect, send one line, print what comes back."""
    proc = host.podman("exec", name, "sh", "-c", f"echo {text} | nc 127.0.0.1 8080", check=False)
    return proc.stdout.strip()


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_snapshot_with_an_open_connection_succeeds_by_default_and_fails_clearly_without_it(
    host: Host, tmp_path: Path
) -> None:
    run_echo(host, "echo")
    store = f"file://{tmp_path}/store"

    with pytest.raises(CheckpointError) as refused:
        snapshot("echo", store, leave_running=True, tcp_established=False)
    assert "tcp-established" in str(refused.value)
    assert host.state("echo") == "running"

    result = snapshot("echo", store, leave_running=True)
    manifest = json.loads(Path(result.url.removeprefix("file://") + ".ferry.json").read_text())["manifest"]
    assert manifest["dump_options"] == {"tcp_established": True, "file_locks": True}


def test_restore_by_default_closes_connections_and_the_server_runs_on(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_echo(host, "echo")
    result = snapshot("echo", f"file://{tmp_path}/store")
    # Another store; the source container stays (exited) only because its config.dump still names
    # the source's runroot (issue 10 item 4; test_volumes covers a source that is gone).

    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)
    restored = restore(result.url)

    assert restored.state == "running" and other_host.state("echo") == "running"
    spec = other_host.podman("inspect", "--format", '{{index .Config.Annotations "org.criu.config"}}', "echo")
    assert spec.stdout.strip().endswith("criu-restore.conf"), "the spec did not name ferry's CRIU config"
    # The connection was restored closed: the client saw it end and is gone, the server is not.
    wait_for(
        lambda: not any(c.startswith("nc 127.0.0.1") for c in commands(other_host, "echo")),
        what="the client of the closed connection to exit",
    )
    assert any(c.startswith("nc -ll -p 8080") for c in commands(other_host, "echo"))
    assert ask_server(other_host, "echo", "after-restore") == "after-restore"
    # The CRIU config file went with the run's staging directory; the container snapshots as any other.
    assert not Path(spec.stdout.strip()).exists()
    again = snapshot("echo", f"file://{tmp_path}/store2", leave_running=True)
    assert again.mode == "leave-running" and other_host.state("echo") == "running"


def test_migration_style_restore_keeps_the_connection(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_echo(host, "echo")
    result = snapshot("echo", f"file://{tmp_path}/store")

    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)
    restore(result.url, tcp_established=True, ignore_static_ip=False, ignore_static_mac=False)

    before = echoed(other_host, "echo")[-1]
    wait_for(lambda: echoed(other_host, "echo")[-1] > before + 10, what="the same client to keep getting echoes")
    values = echoed(other_host, "echo")
    assert values == list(range(1, len(values) + 1)), "the connection lost or repeated data across the move"
    assert any(c.startswith("nc 127.0.0.1") for c in commands(other_host, "echo")), "the client was restarted"


def test_a_restore_crius_rejects_leaves_no_container_and_no_process(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"ferry-reject-{uuid.uuid4().hex[:8]}"
    run_echo(host, "echo", marker)
    result = snapshot("echo", f"file://{tmp_path}/store")
    assert processes_with(marker) == []  # stop mode: the source's processes are gone

    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)
    # Neither keep nor close the archived connection: CRIU refuses, after Podman created the container.
    with pytest.raises(RestoreError) as failed:
        restore(result.url, tcp_established=False, tcp_close=False)

    message = str(failed.value)
    assert "--tcp-close" in message and "Connected TCP socket in image" in message
    assert "removed the container it had created ('echo')" in message
    assert other_host.names() == set()
    assert processes_with(marker) == []


def test_a_restore_that_hangs_is_killed_with_everything_it_started(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CRIU stops after the restored processes exist (an action script that sleeps): the restore
    overruns its timeout, and ferry kills the restored processes, CRIU and its script."""
    from ferry.archive import criu_config

    marker = f"ferry-hang-{uuid.uuid4().hex[:8]}"
    hang = tmp_path / f"{marker}.sh"
    hang.write_text('#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = post-restore ] && sleep 600\nexit 0\n')
    hang.chmod(0o755)
    monkeypatch.setattr(criu_config, "config_text", lambda tcp_close: f"tcp-close\naction-script {hang}\n")
    run_echo(host, "echo", marker)
    result = snapshot("echo", f"file://{tmp_path}/store")

    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)
    with pytest.raises(RestoreError) as failed:
        restore(result.url, name="echo-copy", timeout_seconds=20)

    message = str(failed.value)
    assert "did not finish within 20 s" in message
    assert "killed" in message and "nothing of it is left on this host" in message
    assert other_host.names() == set()
    assert processes_with(marker) == [], "a restored process or CRIU's script survived"

"""Faults on real CRIU: kill -9 at known points, Podman killed mid-export, a dump CRIU refuses, a full staging disk, two
snapshots at once. Nothing is lost, nothing half-done, no container runs twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferry.errors import CheckpointError, FerryError
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import ArchiveStore
from tests.helpers import ULIMITS, Host, env_with, wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]


@pytest.fixture
def cli(host: Host, prefect_harness: None, tmp_path: Path):  # type: ignore[no-untyped-def]
    from prefect.settings import PREFECT_API_URL

    faults = tmp_path / "faults"
    faults.write_text("")
    env = env_with(
        host,
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        FERRY_STAGING=str(tmp_path / "staging"),
        FERRY_FAULTS_FILE=str(faults),
    )

    def start(*args: str, hang: str | None = None) -> subprocess.Popen[str]:
        faults.write_text(f"hang:{hang}\n" if hang else "")
        Path(f"{faults}.hanging").unlink(missing_ok=True)
        return subprocess.Popen(
            [sys.executable, "-m", "ferry.cli", *args],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        faults.write_text("")
        return subprocess.run(
            [sys.executable, "-m", "ferry.cli", *args],
            env=env,
            text=True,
            capture_output=True,
            timeout=600,
            check=False,
        )

    def kill_when_hanging(proc: subprocess.Popen[str]) -> None:
        wait_for(lambda: Path(f"{faults}.hanging").exists() or proc.poll() is not None, what="the hang point")
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Not communicate(): a process the killed one started may still hold the pipes' write ends.
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    start.run = run  # type: ignore[attr-defined]
    start.kill_when_hanging = kill_when_hanging  # type: ignore[attr-defined]
    return start


def _counting(host: Host, name: str, within: float = 30) -> bool:
    """The workload's counter moves on within ``within`` seconds (polled: CI is a loaded 2-core box).
    A failed read (-1: podman exec failed) never counts as moving."""
    deadline = time.monotonic() + within
    before = -1
    while time.monotonic() < deadline:
        now = host.counter(name)
        if now >= 0 and before >= 0 and now > before:
            return True
        if now >= 0 and before < 0:
            before = now  # the first successful read: from here on it must grow
        time.sleep(0.2)
    return False


def _log_size_on_disk(host: Host, name: str) -> int:
    """The size of the workload's append-only log, read through the container's mount from the
    host: works while the container is frozen (where `podman exec` fails), and raises if the log
    cannot be read, so a failed read never passes for "not counting"."""
    root = Path(host.podman("container", "mount", name).stdout.strip())
    return (root / "data" / "log").stat().st_size


def _stopped_counting(host: Host, name: str, window: float = 2) -> bool:
    """Two successful reads ``window`` seconds apart show the same log size."""
    before = _log_size_on_disk(host, name)
    assert before > 0, "the workload never wrote its log"
    time.sleep(window)
    return _log_size_on_disk(host, name) == before


def test_kill_while_frozen_then_rerun_thaws_and_completes(host: Host, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    first = cli("snapshot", "app", "--to", store, "--leave-running", hang="dump")

    wait_for(lambda: Path(f"{tmp_path}/faults.hanging").exists(), what="the dump hang point")
    second = cli.run("snapshot", "app", "--to", store, "--leave-running")
    assert second.returncode == 1 and "Another ferry run" in second.stderr, second.stderr
    cli.kill_when_hanging(first)
    assert _stopped_counting(host, "app"), "the container should still be frozen by the killed run"

    rerun = cli.run("snapshot", "app", "--to", store, "--leave-running")

    assert rerun.returncode == 0, rerun.stderr
    assert _counting(host, "app")
    assert len(ArchiveStore(store).archives("app")) == 1


def test_kill_after_a_stop_mode_dump_then_rerun_brings_it_back_once(host: Host, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    first = cli("snapshot", "app", "--to", store, hang="archive")
    cli.kill_when_hanging(first)
    assert host.state("app") == "exited", "the dump should have stopped it"
    assert ArchiveStore(store).archives() == []

    rerun = cli.run("snapshot", "app", "--to", store)
    assert rerun.returncode == 0, rerun.stderr
    host.podman("rm", "app")
    restored = cli.run("restore", store, "--latest", "app")

    assert restored.returncode == 0, restored.stderr
    assert host.names() == {"app"} and host.state("app") == "running"
    assert _counting(host, "app")


def test_kill_during_restore_then_rerun_restores_exactly_once(host: Host, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    assert cli.run("snapshot", "app", "--to", store, "--leave-running").returncode == 0
    url = ArchiveStore(store).archives()[0].url

    first = cli("restore", url, "--name", "copy", hang="verify")
    cli.kill_when_hanging(first)
    assert host.names() == {"app"}
    rerun = cli.run("restore", url, "--name", "copy")

    assert rerun.returncode == 0, rerun.stderr
    assert host.names() == {"app", "copy"}
    assert host.state("copy") == "running" and _counting(host, "copy")


def test_dump_criu_refuses_leaves_the_container_running_and_thawed(
    host: Host, tmp_path: Path, prefect_harness: None, staging: Path
) -> None:
    # An established TCP connection inside the container: CRIU refuses it without --tcp-established
    # (on by default, so this snapshot turns it off to get a dump CRIU refuses).
    script = (
        "(while :; do sleep 1; done) | nc -l -p 9000 >/dev/null & sleep 0.5; "
        "(while :; do echo x; sleep 1; done) | nc 127.0.0.1 9000 & "
        "i=0; while :; do i=$((i+1)); echo $i > /data/counter; usleep 5000; done"
    )
    host.podman("run", "-d", "--name", "tcp", *ULIMITS, "localhost/ferry-test:latest", "sh", "-c", script)
    wait_for(lambda: host.counter("tcp") > 20, what="the workload to start")
    wait_for(
        lambda: any(line.split()[3] == "01" for line in host.exec("tcp", "cat", "/proc/net/tcp").splitlines()[1:]),
        what="the connection to be established",
    )

    with pytest.raises(CheckpointError) as info:
        snapshot("tcp", f"file://{tmp_path}/store", tcp_established=False)

    message = str(info.value)
    assert "'tcp'" in message and "CRIU log" in message, message
    assert host.state("tcp") == "running" and _counting(host, "tcp")
    assert ArchiveStore(f"file://{tmp_path}/store").archives() == []


def test_full_staging_disk_fails_clearly_and_keeps_the_container(
    host: Host, tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        monkeypatch.setenv("FERRY_STAGING", str(small))
        host.run_workload("app")
        with pytest.raises(FerryError) as info:
            snapshot("app", f"file://{tmp_path}/store")
        assert "no space left" in str(info.value).lower(), str(info.value)
        assert host.state("app") == "running" and _counting(host, "app")
        assert ArchiveStore(f"file://{tmp_path}/store").archives() == []
        assert ArchiveStore(f"file://{tmp_path}/store").incomplete() == []
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def _checkpoint_processes(staging: Path) -> list[int]:
    """Podman checkpoint processes exporting into a FIFO under ``staging``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"checkpoint" in argv and any(str(staging).encode() in a for a in argv):
            found.append(int(proc.name))
    return found


def _checkpoint_events(host: Host, name: str) -> int:
    out = host.podman("events", "--stream=false", "--filter", "event=checkpoint", "--filter", f"container={name}")
    return len(out.stdout.splitlines())


@pytest.fixture
def paused_at_export(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Start a snapshot that pauses in the middle of Podman's export; release() lets it go on.
    A test that fails while it is paused does not leave it running."""
    started: list[subprocess.Popen[str]] = []
    hanging = Path(f"{tmp_path}/faults.hanging")

    def start(*args: str) -> subprocess.Popen[str]:
        proc = cli(*args, hang="export")
        started.append(proc)
        wait_for(lambda: hanging.exists() or proc.poll() is not None, what="the export")
        assert proc.poll() is None, proc.communicate()
        return proc

    def release(proc: subprocess.Popen[str]) -> tuple[str, str]:
        hanging.unlink()
        return proc.communicate(timeout=600)

    start.release = release  # type: ignore[attr-defined]
    yield start
    for proc in started:
        if proc.poll() is None:
            hanging.unlink(missing_ok=True)
            try:
                proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def test_podman_killed_mid_export_leaves_nothing_and_rolls_back(host: Host, paused_at_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    first = paused_at_export("snapshot", "app", "--to", store)
    [podman] = _checkpoint_processes(tmp_path / "staging")  # still exporting: blocked on the FIFO
    os.kill(podman, signal.SIGKILL)

    _, err = paused_at_export.release(first)  # ferry reads on: an export that ends early
    assert first.returncode == 1, err
    assert "podman was killed (signal 9)" in err and "restored on this host" in err, err
    assert _checkpoint_processes(tmp_path / "staging") == []
    assert list((tmp_path / "staging").rglob("dump.*")) == [], "a FIFO or a partial dump copy was left"
    assert ArchiveStore(store).archives() == [] and ArchiveStore(store).incomplete() == []
    assert host.state("app") == "running" and _counting(host, "app")


def test_leave_running_thaws_before_podman_finishes_its_export(host: Host, paused_at_export, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    log = Path(host.podman("container", "mount", "app").stdout.strip()) / "data" / "log"
    first = paused_at_export("snapshot", "app", "--to", store, "--leave-running")
    assert _checkpoint_processes(tmp_path / "staging"), "Podman should still be exporting"
    # While Podman's export is still being read (and `podman exec` would wait for its lock), the
    # container already runs: its log grows, read from the host.
    before = log.stat().st_size
    wait_for(lambda: log.stat().st_size > before, what="the container to run during the export")
    _, err = paused_at_export.release(first)
    assert first.returncode == 0, err
    [entry] = ArchiveStore(store).archives("app")
    times = entry.sidecar.manifest.timestamps
    assert times["dump_started"] < times["thawed"] < times["dump_finished"], times


def test_a_failed_streamed_archive_is_rebuilt_from_the_dump_copy_in_the_same_run(
    host: Host, tmp_path: Path, prefect_harness: None, staging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    faults = tmp_path / "faults"
    faults.write_text("archive\n")  # the archive streamed during the dump fails; the dump does not
    monkeypatch.setenv("FERRY_FAULTS_FILE", str(faults))

    result = snapshot("app", store, leave_running=True)

    assert faults.read_text() == ""
    assert _checkpoint_events(host, "app") == 1
    assert [e.url for e in ArchiveStore(store).archives("app")] == [result.url]
    assert ArchiveStore(store).incomplete() == []
    restored = restore(result.url, name="copy")
    assert restored.name == "copy" and _counting(host, "copy")


def test_archive_failing_after_the_dump_is_retried_without_a_second_dump(
    host: Host, tmp_path: Path, prefect_harness: None, staging: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host.run_workload("app")
    store = f"file://{tmp_path}/store"
    faults = tmp_path / "faults"
    faults.write_text("archive\narchive\n")  # the streamed archive, then its rebuild from the dump's copy
    monkeypatch.setenv("FERRY_FAULTS_FILE", str(faults))

    result = snapshot.with_options(retries=1, retry_delay_seconds=0)("app", store, leave_running=True)

    assert faults.read_text() == "", "both archive attempts of the first try should have failed"
    assert _checkpoint_events(host, "app") == 1, "the retry dumped the container again"
    assert [e.url for e in ArchiveStore(store).archives("app")] == [result.url]
    assert ArchiveStore(store).incomplete() == []
    assert _counting(host, "app")
    restored = restore(result.url, name="copy")
    assert restored.name == "copy" and _counting(host, "copy")

"""The one subprocess boundary (ferry/runtime/process.py) and its error translation, with real
processes (sh stands in for a podman that fails), and StoreRef as a task input."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prefect.utilities.hashing import hash_objects

from ferry.errors import CheckpointError, ContainerNotFoundError, RuntimeCommandError
from ferry.runtime import ContainerInfo, Podman, ProgramNotFoundError, run, run_tool
from ferry.runtime import tools as runtime_tools
from storage.ref import StoreRef, store_of


def _sh(script: str) -> Podman:
    """A 'podman' that runs ``script`` (its arguments are $1...)."""
    return Podman(["sh", "-c", script, "podman"])


def test_run_kills_the_whole_session_on_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    started = time.monotonic()
    done = run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1, what="wait", own_session=True)
    assert done.timed_out and time.monotonic() - started < 60
    child = int(pidfile.read_text())
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the timed-out command's child survived")


def test_a_missing_program_is_a_ferry_error() -> None:
    with pytest.raises(ProgramNotFoundError, match="not installed or not on PATH"):
        Podman(["/nonexistent/podman"]).exists("x")
    assert run_tool(["/nonexistent/tool"])[0] == 127
    assert run_tool(["sh", "-c", "sleep 5"], timeout=0.5)[0] == 124


def test_exists_is_yes_no_and_any_other_status_an_error() -> None:
    assert _sh("exit 0").exists("x") is True
    assert _sh("exit 1").image_exists("x") is False
    with pytest.raises(RuntimeCommandError, match="check whether 'v' exists"):
        _sh("echo 'database is locked' >&2; exit 125").volume_exists("v")


def test_inspect_translates_errors() -> None:
    with pytest.raises(ContainerNotFoundError, match="no container 'app'"):
        _sh("echo 'Error: no such container app' >&2; exit 125").inspect("app")
    with pytest.raises(RuntimeCommandError, match="Cannot inspect container 'app'"):
        _sh("echo 'permission denied' >&2; exit 125").inspect("app")
    with pytest.raises(RuntimeCommandError, match="printed no container"):
        _sh("echo '[]'").inspect("app")


def test_a_failing_command_names_the_command_and_its_output() -> None:
    with pytest.raises(RuntimeCommandError) as err:
        _sh("echo 'boom' >&2; exit 3").save_image("img", Path("/tmp/x"))
    assert err.value.argv[-3:] == ["-o", "/tmp/x", "img"]
    assert "boom" in str(err.value)


def test_crit_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(runtime_tools, "CRIT", str(tmp_path / "no-crit"))
    with pytest.raises(RuntimeCommandError, match="crit is not installed"):
        runtime_tools.crit_decode(tmp_path / "core-1.img")


def test_store_ref_hashes_stably_and_by_value() -> None:
    a = StoreRef("s3://bucket/ferry", {"endpoint_url": "http://x"}, "creds")
    b = StoreRef("s3://bucket/ferry", {"endpoint_url": "http://x"}, "creds")
    assert a == b and hash(a) == hash(b)
    assert hash_objects(a) == hash_objects(b) is not None
    assert hash_objects(a) != hash_objects(a.at("s3://bucket/other"))
    assert hash_objects(a) != hash_objects(StoreRef("s3://bucket/ferry", {"endpoint_url": "http://y"}, "creds"))


def test_store_of() -> None:
    assert store_of("s3://b/ferry/app/2026-app.tar.zst") == "s3://b/ferry"


# -- the checkpoint export read from a FIFO (sh stands in for podman: $4 is the --export path) ------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _info() -> ContainerInfo:
    return ContainerInfo("c" * 64, "app", "running", 1, "", "", "")


def test_checkpoint_stream_reads_what_podman_writes_and_removes_the_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "dump.fifo"
    podman = _sh('head -c 3000000 /dev/urandom > "$4"; echo \'{"podman_checkpoint_duration": 7}\'')
    with podman.checkpoint_stream(_info(), fifo, leave_running=True) as export:
        assert fifo.exists()
        got = 0
        while block := export.read(1 << 20):
            got += len(block)
        stats = export.finish()
    assert got == 3000000 and stats.total_us == 7
    assert not fifo.exists()


def test_checkpoint_stream_of_a_podman_failing_before_its_export(tmp_path: Path) -> None:
    fifo = tmp_path / "dump.fifo"
    podman = _sh("echo 'Error: CRIU failed' >&2; exit 125")
    with (
        pytest.raises(CheckpointError, match="Cannot checkpoint container 'app'") as info,
        podman.checkpoint_stream(_info(), fifo, leave_running=True),
    ):
        pytest.fail("no export to read")
    assert "CRIU failed" in str(info.value.stderr) and not fifo.exists()


def test_checkpoint_stream_of_a_podman_killed_mid_export(tmp_path: Path) -> None:
    fifo, pidfile = tmp_path / "dump.fifo", tmp_path / "pid"
    podman = _sh(f'echo $$ > {pidfile}; head -c 100000 /dev/zero > "$4"; exec sleep 300')
    with (
        pytest.raises(CheckpointError, match=r"podman was killed \(signal 9\)"),
        podman.checkpoint_stream(_info(), fifo, leave_running=True) as export,
    ):
        assert len(export.read(1 << 20)) > 0
        os.kill(int(pidfile.read_text()), 9)
        while export.read(1 << 20):
            pass  # an early end of the export
        export.finish()
    assert not fifo.exists() and not _alive(int(pidfile.read_text()))


def test_checkpoint_stream_abandoned_by_its_reader_lets_podman_finish(tmp_path: Path) -> None:
    fifo, pidfile = tmp_path / "dump.fifo", tmp_path / "pid"
    podman = _sh(f'echo $$ > {pidfile}; exec head -c 50000000 /dev/zero > "$4"')
    with (
        pytest.raises(RuntimeError, match="reader failed"),
        podman.checkpoint_stream(_info(), fifo, leave_running=True) as export,
    ):
        export.read(1 << 16)
        raise RuntimeError("reader failed")
    assert not fifo.exists() and not _alive(int(pidfile.read_text()))


def test_checkpoint_stream_of_a_podman_that_never_exports_times_out(tmp_path: Path) -> None:
    fifo, pidfile = tmp_path / "dump.fifo", tmp_path / "pid"
    podman = _sh(f"echo $$ > {pidfile}; exec sleep 300")
    with (
        pytest.raises(CheckpointError, match="did not start its export within 1 s"),
        podman.checkpoint_stream(_info(), fifo, leave_running=True, timeout=1),
    ):
        pytest.fail("no export to read")
    assert not fifo.exists() and not _alive(int(pidfile.read_text()))

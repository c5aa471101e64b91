"""The resident process's client (ferry/cli/resident.py) on its own: what it trusts, what it
fingerprints, and that anything short of a resident that answers leaves the command to run in
its own process. The resident itself runs in tests/e2e/test_resident.py."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from ferry.cli import resident


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "src" / "ferrypkg_fp"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "stage.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(resident, "PACKAGES", ("ferrypkg_fp",))
    return root


def test_the_fingerprint_follows_every_source_file(package: Path) -> None:
    first = resident.fingerprint()
    assert resident.fingerprint() == first
    st = (package / "stage.py").stat()
    os.utime(package / "stage.py", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    touched = resident.fingerprint()
    assert touched != first
    (package / "new.py").write_text("")
    assert resident.fingerprint() not in (first, touched)


def test_the_fingerprint_names_the_interpreter(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = resident.fingerprint()
    monkeypatch.setattr(sys, "executable", "/opt/other/python3")
    assert resident.fingerprint() != first


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701])
def test_a_run_directory_others_may_enter_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(mode)
    monkeypatch.setenv(resident.RUN_DIR_ENV, str(folder))
    assert resident.private_run_dir(create=False) is None
    folder.chmod(0o700)
    assert resident.private_run_dir(create=False) == folder


def test_a_symlinked_run_directory_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.setenv(resident.RUN_DIR_ENV, str(tmp_path / "link"))
    assert resident.private_run_dir(create=False) is None


def test_the_run_directory_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(resident.RUN_DIR_ENV, str(tmp_path / "a" / "run"))
    folder = resident.private_run_dir(create=True)
    assert folder is not None and folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("value", ["off", "OFF", "0", "no", "false"])
def test_off_runs_every_command_here(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(resident.SWITCH_ENV, value)
    assert not resident.enabled()
    assert resident.forward(["snapshot", "x"]) is None


def test_without_a_resident_the_command_runs_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(resident.SWITCH_ENV, "on")
    monkeypatch.setenv(resident.RUN_DIR_ENV, str(tmp_path / "run"))
    assert resident.forward(["snapshot", "x"]) is None  # no directory
    (tmp_path / "run").mkdir(mode=0o700)
    assert resident.forward(["snapshot", "x"]) is None  # no socket


def test_a_resident_that_closes_before_forking_leaves_the_command_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read the request and closed (an old resident exiting, a malformed request): nothing ran."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv(resident.SWITCH_ENV, "on")
    monkeypatch.setenv(resident.RUN_DIR_ENV, str(folder))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(resident.socket_path(folder, resident.fingerprint())))
        server.listen(1)
        server.settimeout(10)

        def close_after_request() -> None:
            conn, _ = server.accept()
            with conn:
                _head, fds, _, _ = socket.recv_fds(conn, resident.HEADER.size, 3)
                for fd in fds:
                    os.close(fd)

        closer = threading.Thread(target=close_after_request)
        closer.start()
        assert resident.forward(["snapshot", "x"]) is None
        closer.join()


@pytest.mark.parametrize(
    ("line", "code"),
    [(b'{"exit": 0}\n', 0), (b'{"exit": 4}\n', 4), (b'{"signal": 9}\n', 137), (b"", 1), (b"garbage\n", 1)],
)
def test_the_childs_end_is_the_commands_exit_status(line: bytes, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert resident._status(line) == code
    err = capsys.readouterr().err
    if code == 137:
        assert "ended by signal SIGKILL" in err
    if line in (b"", b"garbage\n"):
        assert "the resident ferry process ended before the command did" in err

"""Progress on the terminal, as an operator sees it: the real `ferry` command under a real
pseudo-terminal (and with stderr on a pipe), real Podman and CRIU, a container whose rootfs holds
200 MiB of fresh data, so the transfer lasts long enough to watch."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import IMAGE, ULIMITS, WORKLOAD, Host, env_with, wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]

BIG_MIB = 200
# 200 MiB of random bytes (zstd cannot shrink them: the archive stage really moves them) written
# into the container's rootfs, then the usual counting workload.
BIG_WORKLOAD = f"head -c {BIG_MIB << 20} /dev/urandom > /data/big && touch /data/ready; {WORKLOAD}"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colours: inside a line
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # cursor movement and erasing: between redraws
# "12.5 MiB/210.3 MiB": a live update of a stage with a known total
PARTIAL = re.compile(r"([0-9.]+) MiB/([0-9.]+) MiB")
FINISHED = r"({}) [0-9.]+ (s|B|KiB|MiB|GiB)( .*)?"  # "dump 2.1 s", "download 200.0 MiB 1.7 s 118.6 MiB/s"
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31m"


@pytest.fixture
def cli_env(host: Host, prefect_harness: None, tmp_path: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return env_with(
        host,
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        FERRY_STAGING=str(tmp_path / "staging"),
        TERM="xterm-256color",
        COLUMNS="120",
    )


@dataclass
class TerminalRun:
    """What a command wrote to its terminal (stderr), chunk by chunk, and whether it was still
    running when each chunk was read."""

    returncode: int
    stdout: str
    chunks: list[tuple[bool, str]] = field(default_factory=list)

    @property
    def terminal(self) -> str:
        return "".join(text for _, text in self.chunks)

    def screens(self, *, while_running: bool) -> list[str]:
        """The terminal's text, control sequences taken out, per redraw."""
        text = "".join(t for running, t in self.chunks if running or not while_running)
        return [s for s in CSI.sub("\n", SGR.sub("", text)).replace("\r", "\n").split("\n") if s.strip()]


def ferry_on_a_terminal(env: dict[str, str], *args: str) -> TerminalRun:
    """Run `ferry` with stderr on a pseudo-terminal (stdout on a pipe), reading the terminal as
    the command writes it."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    run = TerminalRun(0, "")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.05)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        running = proc.poll() is None  # before the read: this chunk was written while it ran
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not data:
            break
        run.chunks.append((running, data.decode(errors="replace")))
    os.close(leader)
    assert proc.stdout is not None
    with proc.stdout:
        run.stdout = proc.stdout.read().decode()
    run.returncode = proc.wait(timeout=60)
    return run


def ferry_piped(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def run_big(host: Host, name: str) -> None:
    host.podman("run", "-d", "--name", name, *ULIMITS, IMAGE, "sh", "-c", BIG_WORKLOAD)
    wait_for(
        lambda: host.podman("exec", name, "ls", "/data/ready", check=False).returncode == 0,
        what=f"{name} to write {BIG_MIB} MiB",
        timeout=300,
    )


def test_snapshot_and_restore_show_progress_on_a_terminal(host: Host, cli_env: dict[str, str], tmp_path: Path) -> None:
    run_big(host, "big")
    store = f"file://{tmp_path}/store"

    snap = ferry_on_a_terminal(cli_env, "snapshot", "big", "--to", store, "--leave-running")
    assert snap.returncode == 0, snap.terminal
    url = snap.stdout.strip()
    assert url.startswith(f"{store}/big/") and "\x1b" not in snap.stdout, "progress leaked onto stdout"
    live = snap.screens(while_running=True)
    partial = [
        (line, float(m[1]), float(m[2])) for line in live if line.startswith("archive") and (m := PARTIAL.search(line))
    ]
    assert any(0 < done < total for _, done, total in partial), f"no update part way through the archive: {live}"
    assert any(total >= BIG_MIB for _, _, total in partial), partial
    assert any(re.search(r"MiB/s ETA [0-9]+:[0-9]{2}", line) for line, _, _ in partial), partial
    finished = [s for s in live if re.fullmatch(FINISHED.format("inspect|rootfs-diff|dump|archive|publish"), s)]
    assert [s.split(" ")[0] for s in finished] == ["inspect", "rootfs-diff", "dump", "archive", "publish"], live
    assert re.fullmatch(r"rootfs-diff 20[0-9]\.[0-9] MiB [0-9.]+ s [0-9.]+ [KMG]iB/s", finished[1]), finished
    assert re.fullmatch(
        r"archive 20[0-9]\.[0-9] MiB [0-9.]+ s [0-9.]+ [KMG]iB/s \(20[0-9]\.[0-9] MiB stored\)", finished[3]
    )

    quiet = ferry_on_a_terminal(cli_env, "snapshot", "big", "--to", store, "--leave-running", "--quiet")
    assert quiet.returncode == 0, quiet.terminal
    assert quiet.stdout.strip().startswith(f"{store}/big/")
    screens = quiet.screens(while_running=False)
    assert not [s for s in screens if re.match(r"(inspect|rootfs-diff|dump|archive|publish)\b", s)], screens
    assert screens == [s for s in screens if s.startswith("snapshot of big")], screens  # the result line only
    assert "MiB/s" not in quiet.terminal

    restored = ferry_on_a_terminal(cli_env, "restore", url, "--name", "big-copy")
    assert restored.returncode == 0, restored.terminal
    assert "big-copy" in restored.stdout and "\x1b" not in restored.stdout
    live = restored.screens(while_running=True)
    finished = [s for s in live if re.fullmatch(FINISHED.format("receive|restore"), s)]
    assert [s.split(" ")[0] for s in finished] == ["receive", "restore"], live
    assert any(line.startswith("receive") and PARTIAL.search(line) for line in live), live
    assert not [s for s in live if s.startswith(("download", "verify", "prepare-import"))], live  # one pass
    assert host.state("big-copy") == "running"


def test_plain_lines_and_escaped_names_when_stderr_is_a_pipe(
    host: Host, cli_env: dict[str, str], tmp_path: Path
) -> None:
    host.podman("run", "-d", "--name", "app", *ULIMITS, IMAGE, "sh", "-c", WORKLOAD)
    store = tmp_path / "store"
    snap = ferry_piped(cli_env, "snapshot", "app", "--to", f"file://{store}", "--leave-running")
    assert snap.returncode == 0, snap.stderr
    assert "\x1b" not in snap.stderr and "\r" not in snap.stderr, snap.stderr
    lines = snap.stderr.splitlines()
    for stage in ("inspect", "rootfs-diff", "dump", "archive", "publish"):
        started = [i for i, line in enumerate(lines) if line.startswith(f"{stage} started")]
        ended = [i for i, line in enumerate(lines) if re.fullmatch(FINISHED.format(stage), line)]
        assert len(started) == len(ended) == 1 and started[0] < ended[0], (stage, lines)
    assert "archive started: app, zstd, " in snap.stderr

    # An archive whose name in the store carries terminal control sequences (anyone who can
    # write to the bucket can name one so): restored with --latest, the name reaches the
    # receive stage's line escaped.
    url = snap.stdout.strip()
    archive = Path(url.removeprefix("file://"))
    hostile = archive.with_name(f"{archive.name[:8]}{HOSTILE}{archive.name[8:]}")
    hostile.hardlink_to(archive)
    shutil.copy(f"{archive}.ferry.json", f"{hostile}.ferry.json")
    archive.unlink()
    Path(f"{archive}.ferry.json").unlink()
    restored = ferry_piped(cli_env, "restore", f"file://{store}", "--latest", "app", "--name", "app-copy")
    assert restored.returncode == 0, restored.stderr
    assert "\x1b" not in restored.stderr and "\x07" not in restored.stderr, restored.stderr
    assert "receive started: " in restored.stderr and "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31m" in restored.stderr
    for stage in ("locate", "receive", "restore"):
        assert any(re.fullmatch(FINISHED.format(stage), line) for line in restored.stderr.splitlines()), stage

    # and on a terminal, none of the sequences reach it as they were stored
    again = ferry_on_a_terminal(cli_env, "restore", f"file://{store}", "--latest", "app", "--name", "app-copy-2")
    assert again.returncode == 0, again.terminal
    assert HOSTILE not in again.terminal and "\x1b]" not in again.terminal and "\x07" not in again.terminal
    assert "\\x1b]0;owned" in again.terminal

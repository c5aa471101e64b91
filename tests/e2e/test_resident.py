"""The resident ferry process (ferry/cli/resident.py): after the first flow command, the next
ones run in a child of one process that has Prefect and the flows imported. Real `ferry`
processes, a real resident, real Podman and CRIU, a real Prefect server; the resident of this
module has a run directory of its own and is stopped at the end."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_terminal_progress import CSI, SGR, ferry_on_a_terminal
from tests.helpers import IMAGE, ULIMITS, Host, env_with, s3_env, wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]

_NAMES = iter(range(1000))


def ferry(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def stop(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "ferry.cli.resident_server", "stop"], env=env, timeout=60, check=False)


@dataclass
class Resident:
    host: Host
    env: dict[str, str]  # the resident on; FERRY_STORE is `store`
    store: str
    run: Path

    @property
    def log(self) -> str:
        logs = list(self.run.glob("resident-*.log"))
        return "\n".join(p.read_text() for p in logs)

    def served(self) -> list[tuple[int, str]]:
        """(child PID, command) for every command the resident has forked a child for."""
        return [(int(m[1]), m[2]) for m in re.finditer(r"child (\d+): ferry (\w+)$", self.log, re.M)]

    def ended(self, pid: int) -> dict[str, int] | None:
        found = re.search(rf"child {pid}: (\{{.*\}})$", self.log, re.M)
        return json.loads(found[1].replace("'", '"')) if found else None

    def status(self) -> dict[str, object] | None:
        proc = subprocess.run([sys.executable, "-m", "ferry.cli.resident_server", "status"], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def container(self) -> str:
        name = f"r{next(_NAMES)}"
        self.host.podman("run", "-d", "--name", name, *ULIMITS, IMAGE, "sleep", "1000000")
        return name


@pytest.fixture(scope="module")
def resident(
    real_criu: None, rootfs_tar: Path, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Resident]:
    from prefect.settings import PREFECT_API_URL

    tmp = tmp_path_factory.mktemp("resident")
    host = Host(Path(f"/var/tmp/fth/{os.getpid()}-res"))
    run = tmp / "run"
    store = f"file://{tmp}/store"
    env = env_with(
        host,
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        FERRY_STAGING=str(tmp / "staging"),
        FERRY_STORE=store,
        FERRY_RUN_DIR=str(run),
        FERRY_RESIDENT="on",
    )
    r = Resident(host, env, store, run)
    try:
        host.podman("import", str(rootfs_tar), IMAGE)
        first = ferry(env, "snapshot", r.container())
        assert first.returncode == 0, first.stderr
        assert r.served() == [], "the first command found a resident that was not started yet"
        wait_for(lambda: r.status() is not None, what="the resident ferry process to answer", timeout=180)
        assert run.stat().st_mode & 0o777 == 0o700
        yield r
    finally:
        found = r.status()
        stop(env)
        if found:
            wait_for(lambda: not Path(f"/proc/{found['pid']}").exists(), what="the resident to exit", timeout=60)
        host.cleanup()
        shutil.rmtree(host.base, ignore_errors=True)


def test_snapshot_and_restore_run_in_the_resident_with_the_same_results(resident: Resident) -> None:
    name = resident.container()
    before = len(resident.served())

    snap = ferry(resident.env, "snapshot", name, "--json")
    restored = None
    assert snap.returncode == 0, snap.stderr
    made = json.loads(snap.stdout)
    assert made["url"].startswith(f"{resident.store}/{name}/") and made["mode"] == "stop"
    back = ferry(resident.env, "restore", made["url"], "--name", f"{name}-back", "--json")
    assert back.returncode == 0, back.stderr
    restored = json.loads(back.stdout)

    served = resident.served()[before:]
    assert [command for _, command in served] == ["snapshot", "restore"], resident.log
    assert all(resident.ended(pid) == {"exit": 0} for pid, _ in served), resident.log
    assert restored["name"] == f"{name}-back"
    assert resident.host.state(f"{name}-back") == "running"
    assert resident.host.state(name) == "exited"  # stop mode


def test_the_runs_are_flow_runs_on_the_configured_prefect_server(resident: Resident) -> None:
    from prefect import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.utilities.asyncutils import run_coro_as_sync

    name = resident.container()
    snap = ferry(resident.env, "snapshot", name)
    assert snap.returncode == 0, snap.stderr

    async def runs() -> list[dict[str, object]]:
        async with get_client() as client:
            found = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
            return [dict(r.parameters) | {"state": r.state_name} for r in found]

    mine = [r for r in run_coro_as_sync(runs()) or [] if r.get("container") == name]
    assert [r["state"] for r in mine] == ["Completed"], mine
    assert resident.served()[-1][1] == "snapshot"


def test_the_command_gets_the_callers_environment_and_terminal(
    resident: Resident, rootfs_tar: Path, tmp_path: Path
) -> None:
    """FERRY_STORE and FERRY_PODMAN of this command, not of the one that started the resident;
    stderr is this command's terminal (live progress), stdout its pipe (only the URL)."""
    other = f"file://{tmp_path}/elsewhere"
    name = resident.container()
    env = dict(resident.env, FERRY_STORE=other, TERM="xterm-256color", COLUMNS="120")
    before = len(resident.served())

    run = ferry_on_a_terminal(env, "snapshot", name)

    assert run.returncode == 0, run.terminal
    assert run.stdout.strip().startswith(f"{other}/{name}/"), run.stdout
    assert "\x1b" not in run.stdout
    assert CSI.search(run.terminal), "stderr was not seen as a terminal"
    lines = [s for s in CSI.sub("\n", SGR.sub("", run.terminal)).replace("\r", "\n").split("\n") if s.strip()]
    done = [s.split(" ")[0] for s in lines if re.fullmatch(r"(inspect|rootfs-diff|dump|archive|publish) [0-9.]+ .*", s)]
    assert done == ["inspect", "rootfs-diff", "dump", "archive", "publish"], lines
    assert [c for _, c in resident.served()[before:]] == ["snapshot"]

    elsewhere = Host(Path(f"/var/tmp/fth/{os.getpid()}-res2"))
    try:  # another host's Podman for this one command: the archive restores there, not here
        elsewhere.podman("import", str(rootfs_tar), IMAGE)
        back = ferry(dict(resident.env, FERRY_PODMAN=elsewhere.env_value), "restore", run.stdout.strip())
        assert back.returncode == 0, back.stderr
        assert elsewhere.state(name) == "running"
        assert resident.host.state(name) == "exited"
    finally:
        elsewhere.cleanup()
        shutil.rmtree(elsewhere.base, ignore_errors=True)


def test_failures_exit_and_read_as_in_a_process_of_their_own(resident: Resident) -> None:
    before = len(resident.served())
    through = ferry(resident.env, "snapshot", "no-such-container", "--json")
    alone = ferry(dict(resident.env, FERRY_RESIDENT="off"), "snapshot", "no-such-container", "--json")

    assert [c for _, c in resident.served()[before:]] == ["snapshot"]
    assert through.returncode == alone.returncode == 3, (through.stderr, alone.stderr)
    assert json.loads(through.stdout) == json.loads(alone.stdout)
    assert through.stderr == alone.stderr
    usage = ferry(resident.env, "restore", "--timeout", "0", "x")  # argparse's: before any resident is asked
    assert usage.returncode == 2 and len(resident.served()) == before + 1


def _never_answering_restore(resident: Resident, server: socket.socket) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ferry.cli", "restore", "s3://ferry/store/x/archive.tar.zst"],
        env=s3_env(resident.env, server.getsockname()[1]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _child_of(resident: Resident, before: int) -> int:
    wait_for(lambda: len(resident.served()) > before, what="the resident to fork the command")
    pid, command = resident.served()[before]
    assert command == "restore"
    return pid


def test_ctrl_c_interrupts_the_command_in_the_resident(resident: Resident) -> None:
    before = len(resident.served())
    with socket.create_server(("127.0.0.1", 0)) as server:
        proc = _never_answering_restore(resident, server)
        try:
            conn, _ = server.accept()  # the child is waiting for the store's answer now
            with conn:
                child = _child_of(resident, before)
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "ferry: interrupted" in err and "Traceback" not in err
    assert resident.ended(child) == {"exit": 130}
    assert not Path(f"/proc/{child}").exists()


def test_a_killed_client_leaves_no_command_running(resident: Resident) -> None:
    """The client dies (SIGKILL, a closed terminal): the resident interrupts its command, which
    ends as a Ctrl-C would end it."""
    before = len(resident.served())
    with socket.create_server(("127.0.0.1", 0)) as server:
        proc = _never_answering_restore(resident, server)
        try:
            conn, _ = server.accept()
            with conn:
                child = _child_of(resident, before)
                proc.kill()
                proc.communicate(timeout=60)
                wait_for(lambda: resident.ended(child) is not None, what="the orphaned command to end")
        finally:
            proc.kill()
    assert resident.ended(child) == {"exit": 130}
    wait_for(lambda: not Path(f"/proc/{child}").exists(), what="the child to be reaped")


def test_a_changed_installation_is_not_served_by_the_old_resident(resident: Resident, tmp_path: Path) -> None:
    """A source file of ferry changes (an upgrade): the next command runs in a process of its own
    and starts a resident for the new code; the old one is not asked."""
    from ferry.cli import resident as client

    source = Path(client.__file__)
    stat = source.stat()
    before = len(resident.served())
    old = resident.status()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        snap = ferry(resident.env, "snapshot", resident.container())
        assert snap.returncode == 0, snap.stderr
        assert len(resident.served()) == before, "the old resident ran the changed installation's command"
        wait_for(lambda: (s := resident.status()) is not None and s["pid"] != old["pid"] if old else False,
                 what="a resident for the changed installation", timeout=180)  # fmt: skip
    finally:
        new = resident.status()
        stop(resident.env)
        if new:
            wait_for(lambda: not Path(f"/proc/{new['pid']}").exists(), what="the new resident to exit")
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert resident.status() == old, "the first resident stopped"


@dataclass
class Lone:
    """A resident of its own, started directly, in a run directory of its own."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    view: Resident

    @property
    def log(self) -> str:
        return self.view.log


def _lone(tmp_path: Path, **extra: str) -> Lone:
    from prefect.settings import PREFECT_API_URL

    from ferry.cli import resident as client

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()), FERRY_STAGING=str(tmp_path / "staging"),
               FERRY_RUN_DIR=str(run), FERRY_RESIDENT="on", **extra)  # fmt: skip
    with (run / "resident-lone.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.resident_server", client.fingerprint()],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    view = Resident(Host(tmp_path / "unused"), env, "", run)
    try:
        wait_for(lambda: view.status() is not None, what="the resident to answer", timeout=180)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Lone(env, proc, view)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"  # a zombie until its parent reaps it
    except OSError:
        return True


def test_an_idle_resident_exits_and_removes_its_socket(prefect_harness: None, tmp_path: Path) -> None:
    lone = _lone(tmp_path, FERRY_RESIDENT_IDLE="2")
    assert lone.proc.wait(timeout=60) == 0
    assert "idle for 2 s: exiting" in lone.log
    assert list((tmp_path / "run").glob("*.sock")) == []
    assert lone.view.status() is None


def test_stop_waits_for_the_running_command_and_takes_no_new_one(prefect_harness: None, tmp_path: Path) -> None:
    lone = _lone(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as server:
        proc = _never_answering_restore(lone.view, server)
        try:
            conn, _ = server.accept()
            with conn:
                child = _child_of(lone.view, 0)
                stop(lone.env)
                wait_for(lambda: lone.view.status() is None, what="the resident to stop taking commands")
                assert list(lone.view.run.glob("*.sock")) == [], "the stopping resident left its socket"
                assert lone.proc.poll() is None, "the resident exited with a command still running"
                assert not _gone(child)
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
            if lone.proc.poll() is None and proc.returncode != 130:
                lone.proc.kill()
    assert proc.returncode == 130, (out, err)
    assert lone.proc.wait(timeout=60) == 0, "the stopped resident did not exit after its last command"
    assert lone.log.rstrip().endswith("stopped"), lone.log

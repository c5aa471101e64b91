"""Honest use that must keep working beside the checks.

Part of issue 10's acceptance suite (see tests/e2e/attacks/__init__.py): each test is an archive an
attacker with write access to the bucket could write, restored as root on the real restore path.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from flows.snapshot import snapshot
from tests.archive_forge import (
    Unpacked,
    tree_state,
)
from tests.attack_lab import Attempt, Lab, describe, restore_hostile
from tests.e2e.attacks.exploits import (
    VOLUME,
)
from tests.helpers import IMAGE, ULIMITS, WORKLOAD, Host, wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]


# ---------------------------------------------------------------------------------------------
# Honest use: must work


def test_unchanged_snapshot_restores_on_another_store_and_leaves_the_original_alone(lab: Lab, atk: Attempt) -> None:
    """The lab's own snapshot, unchanged, restores on the target store; the original keeps
    running on the source store with its files (pid files, shm, userdata) untouched, also once
    the copy is removed. (Its config.dump names the source's conmon pid file and shm mount.)"""
    before = {p: tree_state(p) for p in lab.source_userdata}
    proc = restore_hostile(lab.base.clone(), store=lab.store / atk.name, name=atk.name, env=lab.env)
    try:
        assert proc.returncode == 0, proc.stderr
        assert lab.target.state(atk.name) == "running"
        # the shell truncates, then writes /data/counter: a read in between finds it empty (-1)
        wait_for(lambda: lab.target.counter(atk.name) > 0, what="the restored copy to count")
        assert lab.target.exec(atk.name, "cat", "/vol/v", "/dev/shm/s").split() == ["vol", "shm"]
    finally:
        lab.target.podman("rm", "-f", "-t", "0", atk.name, check=False)
        lab.target.podman("volume", "rm", "-f", VOLUME, check=False)
    assert lab.source.state("app") == "running"
    after = {p: tree_state(p) for p in lab.source_userdata}
    assert after == before, f"the original's files changed: { {str(p): describe(before[p], after[p]) for p in before} }"


def _snapshot(host: Host, name: str, store: Path) -> str:
    return snapshot(name, f"file://{store}", leave_running=True).url


def _cli_env(host: Host, tmp_path: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(
        FERRY_PODMAN=host.env_value,
        FERRY_STAGING=str(tmp_path / "staging"),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


def _userdata(host: Host, name: str) -> list[Path]:
    cid = host.podman("inspect", "--format", "{{.Id}}", name).stdout.strip()
    return [
        host.base / "root" / "overlay-containers" / cid / "userdata",
        host.base / "run" / "overlay-containers" / cid / "userdata",
    ]


def _mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def test_named_copy_beside_its_original_then_removed_leaves_the_original_alone(
    host: Host, tmp_path: Path, staging: Path
) -> None:
    host.podman("run", "-d", "--name", "app", *ULIMITS, IMAGE, "sh", "-c", f"echo shm > /dev/shm/s; {WORKLOAD}")
    wait_for(lambda: host.counter("app") >= 20, what="the workload to count")
    url = _snapshot(host, "app", tmp_path / "store")
    userdata = _userdata(host, "app")
    shm = userdata[0] / "shm"
    assert _mounted(shm)
    pidfiles = {p: p.read_bytes() for p in (userdata[1] / "conmon.pid", userdata[1] / "pidfile") if p.exists()}
    before = {p: tree_state(p) for p in userdata}

    archive = Unpacked.parse(Path(url.removeprefix("file://")).read_bytes())
    proc = restore_hostile(archive, store=tmp_path / "again", name="copy", env=_cli_env(host, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert host.state("copy") == "running"
    host.podman("rm", "-f", "-t", "0", "copy")

    after = {p: tree_state(p) for p in userdata}  # first: an exec's session lives in the userdata
    assert host.state("app") == "running"
    assert _mounted(shm), "removing the copy unmounted the original's /dev/shm"
    assert host.exec("app", "cat", "/dev/shm/s").strip() == "shm"
    assert {p: p.read_bytes() for p in pidfiles if p.exists()} == pidfiles, "the original's pid files changed"
    assert after == before, (
        f"the original's userdata changed: { {str(p): describe(before[p], after[p]) for p in before} }"
    )


def test_restore_where_podman_paths_differ_from_the_source(
    host: Host, other_host: Host, tmp_path: Path, staging: Path
) -> None:
    """The source container is gone and its store's directories moved away; the target store
    has other --root/--runroot paths. Nothing of the source's paths may be needed."""
    host.run_workload("app")
    url = _snapshot(host, "app", tmp_path / "store")
    host.podman("rm", "-f", "-t", "0", "app")
    subprocess.run(["umount", "-R", str(host.base / "root" / "overlay")], capture_output=True, check=False)
    moved = host.base / "moved-away"
    moved.mkdir()
    for part in ("root", "run", "tmp"):
        if (host.base / part).exists():
            (host.base / part).rename(moved / part)

    archive = Unpacked.parse(Path(url.removeprefix("file://")).read_bytes())
    proc = restore_hostile(archive, store=tmp_path / "again", name="app", env=_cli_env(other_host, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert other_host.state("app") == "running"
    counted = other_host.counter("app")
    wait_for(lambda: other_host.counter("app") > counted, what="the restored copy to count on")
    assert not any((host.base / part).exists() for part in ("root", "run")), "the restore recreated the source's paths"

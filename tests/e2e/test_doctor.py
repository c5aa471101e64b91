"""`ferry doctor` and `scripts/provision-criu` against real CRIU builds on this kernel.

Each CRIU under test is a real Debian build: forky's 4.2 (what provisioning picks here, first on
PATH for the suite), trixie's 4.1 and bookworm's 3.17, unpacked by `scripts/provision-criu`
(FERRY_CRIU_SUITE) into /var/cache/ferry-test and reused by later runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.criu_probe import WORKLOAD
from ferry.runtime import criu_probe
from tests.helpers import Host

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "scripts" / "provision-criu"
CACHE = Path(os.environ.get("FERRY_TEST_CACHE", "/var/cache/ferry-test"))


def kernel() -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", platform.release()).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def version(criu: Path | str) -> tuple[int, ...]:
    out = subprocess.run([str(criu), "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"Version:\s*([\d.]+)", out)
    assert found, f"{criu} --version printed {out!r}"
    return tuple(int(p) for p in found.group(1).split("."))


def provision(suite: str) -> Path:
    """A private copy of Debian SUITE's criu (downloaded once, then reused); its bin directory."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".criu-{suite}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs share the cache
        proc = subprocess.run(
            ["bash", str(PROVISION)],
            env=dict(os.environ, FERRY_CRIU_SUITE=suite, FERRY_CRIU_DIR=str(CACHE / f"criu-{suite}")),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def ferry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture
def podman_env() -> Iterator[dict[str, str]]:
    """Doctor's podman checks against a private, empty store (no image needed)."""
    host = Host(Path(f"/var/tmp/fth/{os.getpid()}-doc"))
    yield dict(os.environ, FERRY_PODMAN=host.env_value)
    host.cleanup()
    shutil.rmtree(host.base, ignore_errors=True)


def with_criu(env: dict[str, str], bindir: Path) -> dict[str, str]:
    return dict(env, PATH=f"{bindir}:{env['PATH']}")


def prlimit_denied_for_other_uids() -> bool:
    """Does this host refuse prlimit(2) on another uid's process, even to root?"""
    proc = subprocess.Popen(["sleep", "60"], user="nobody", stdin=subprocess.DEVNULL)
    try:
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    except PermissionError:
        return True
    finally:
        proc.kill()
        proc.wait()
    return False


def assert_probe_cleaned_up() -> None:
    """No throwaway process left running and no CRIU network-lock rule left in iptables."""
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if WORKLOAD.encode() in cmdline.read_bytes():
                leftovers.append(cmdline.parent.name)
        except OSError:
            continue
    assert not leftovers, f"probe processes left running: {leftovers}"
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=False).stdout
    assert not [r for r in rules.splitlines() if "0xc114" in r and "127.0.0.1" in r], rules


def test_doctor_with_criu_4_2_passes_the_socket_probe(podman_env: dict[str, str]) -> None:
    criu = shutil.which("criu")
    assert criu and version(criu) >= (4, 2), f"this suite runs with CRIU >= 4.2 first on PATH, found {criu}"

    doctor = ferry(podman_env, "doctor")

    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "ok   criu: criu 4." in doctor.stdout
    assert "ok   criu probe: criu 4." in doctor.stdout
    assert "established connection and a file lock" in doctor.stdout
    if prlimit_denied_for_other_uids():
        # This machine: a warning, not a failure, naming the limit and who it affects.
        line = next(line for line in doctor.stdout.splitlines() if line.startswith("WARN criu probe as nobody"))
        assert "denies prlimit on another uid" in line and "non-root user" in line and "cannot be checkpointed" in line
        assert "with 1 warning(s)" in doctor.stdout
    else:
        assert "ok   criu probe as nobody" in doctor.stdout
    dirty = subprocess.run(["criu", "check", "--feature", "mem_dirty_track"], capture_output=True, check=False)
    if dirty.returncode != 0:
        assert "info memory tracking: soft-dirty memory tracking is off" in doctor.stdout
        assert "pre-dump / iterative migration cannot work" in doctor.stdout
    else:
        assert "ok   memory tracking" in doctor.stdout
    assert_probe_cleaned_up()


def test_doctor_with_criu_4_1_names_the_socket_limitation_and_the_fix(podman_env: dict[str, str]) -> None:
    assert kernel() >= (6, 16), "this test is about CRIU 4.1 on Linux >= 6.16"
    bindir = provision("trixie")
    assert version(bindir / "criu")[:2] == (4, 1)

    doctor = ferry(with_criu(podman_env, bindir), "doctor")

    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert "ok   criu: criu 4.1" in doctor.stdout, "`criu check` passes: that is what made it look fine"
    probe = doctor.stdout[doctor.stdout.index("FAIL criu probe:") :]
    assert "Can't get 1:16 opt: Operation not supported" in probe
    assert "Linux 6.16 restricted SO_PASSCRED" in probe
    assert "fix: install CRIU >= 4.2" in probe and "scripts/provision-criu" in probe and "forky" in probe
    assert "Traceback" not in doctor.stdout + doctor.stderr
    assert_probe_cleaned_up()


def test_doctor_explains_the_vdso_problem_of_criu_3(podman_env: dict[str, str]) -> None:
    assert kernel() >= (6, 13), "this test is about CRIU 3.x on Linux >= 6.13"
    bindir = provision("bookworm")
    assert version(bindir / "criu")[0] == 3

    doctor = ferry(with_criu(podman_env, bindir), "doctor")

    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert "FAIL criu: criu 3." in doctor.stdout
    probe = doctor.stdout[doctor.stdout.index("FAIL criu probe:") :]
    assert "vDSO layout" in probe and "vdso: Unexpected rt vDSO area bounds" in probe
    assert "provision-criu" in probe


def test_probe_fails_when_the_restored_connection_does_not_carry_on() -> None:
    """The probe checks the restored process, not only CRIU's exit status: restored with
    --tcp-close (CRIU succeeds, the connection comes back closed), it fails at verify."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "ferry" / "criu_probe.py"), "--json", "--restore-option=--tcp-close"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["stage"] == "verify" and "connection" in result["detail"], result
    assert_probe_cleaned_up()


OFFLINE = "http://127.0.0.1:9/no-downloads"  # any download attempt fails


def run_provision(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(PROVISION)],
        env=dict(os.environ, FERRY_DEBIAN_MIRROR=OFFLINE, **env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def system_criu() -> Path | None:
    found = shutil.which("criu", path="/usr/sbin:/usr/bin:/sbin:/bin")
    return Path(found) if found else None


def test_provision_criu_keeps_a_criu_that_passes_the_probe(tmp_path: Path) -> None:
    """CI runs provision-criu before every run: with the CRIU it provisioned already in place,
    it re-probes, keeps it and prints its directory, without downloading anything."""
    criu = Path(shutil.which("criu") or "criu").resolve()
    private = criu.parent.parent
    if (private / "root" / "usr" / "sbin" / "criu").exists():
        proc = run_provision(FERRY_CRIU_DIR=str(private))
        expected, said = private / "bin", "private criu already works"
    else:  # the distro's CRIU is the one that passed
        proc = run_provision(FERRY_CRIU_DIR=str(tmp_path / "none"))
        expected, said = criu.parent, "distro criu works"

    assert proc.returncode == 0, proc.stderr
    chosen = Path(proc.stdout.strip().splitlines()[-1])
    assert chosen == expected, proc.stderr
    assert said in proc.stderr and ": passes:" in proc.stderr
    assert criu_probe(criu=str(chosen / "criu")).ok


def test_provision_criu_never_keeps_a_criu_that_only_passes_criu_check(tmp_path: Path) -> None:
    """A private dir holding trixie's 4.1 (passes `criu check`, fails the probe here) is not
    kept; with no suite left to try and downloads cut off, provisioning picks the distro's CRIU
    only if that passes the probe, else fails saying so."""
    assert kernel() >= (6, 16), "this test is about CRIU 4.1 on Linux >= 6.16"
    stale = tmp_path / "criu"
    shutil.copytree(provision("trixie").parent, stale, symlinks=True)
    assert subprocess.run([str(stale / "bin" / "criu"), "check"], capture_output=True, check=False).returncode == 0

    proc = run_provision(FERRY_CRIU_DIR=str(stale), FERRY_CRIU_SUITES="")

    assert "[socket-passcred]" in proc.stderr and str(stale / "bin" / "criu") in proc.stderr
    distro = system_criu()
    if distro is not None and criu_probe(criu=str(distro)).ok:
        assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == str(distro.parent)
    else:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "no CRIU passes the probe" in proc.stderr
        assert str(stale) not in proc.stdout


def test_provision_criu_falls_through_to_the_first_suite_that_passes(tmp_path: Path) -> None:
    """From nothing (downloads from Debian's mirror): on this kernel the distro's 3.17 and
    trixie's 4.1 fail the probe, so forky's 4.2 is unpacked, probed and installed."""
    assert kernel() >= (6, 16), "this test is about Linux >= 6.16, where only CRIU >= 4.2 passes"
    distro = system_criu()
    assert distro is None or not criu_probe(criu=str(distro)).ok, "premise: the distro's CRIU fails here"
    target = tmp_path / "criu"

    proc = subprocess.run(
        ["bash", str(PROVISION)],
        env=dict(os.environ, FERRY_CRIU_DIR=str(target)),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(target / "bin")
    said = proc.stderr
    assert said.index("trying Debian trixie's criu") < said.index("[socket-passcred]")
    assert said.index("[socket-passcred]") < said.index("trying Debian forky's criu") < said.index("ready in")
    assert (target / "suite").read_text().startswith("forky criu 4.2")
    assert version(target / "bin" / "criu") >= (4, 2)
    assert criu_probe(criu=str(target / "bin" / "criu")).ok
    assert not (tmp_path / "criu.new").exists()


def test_probe_verification_notices_a_lock_that_is_not_held(tmp_path: Path) -> None:
    """The check run after a restore, on a real running workload: its own lock file passes, a
    file nobody locked fails as a lost lock."""
    from ferry import criu_probe as p

    top = tmp_path / "probe"
    top.mkdir()
    with p._workload(top, "root") as (proc, work):
        port, _ = p._wait_ready(proc, work / "port")
        p._check_running(proc.pid, port, work / "lock", "verify")
        unlocked = work / "other"
        unlocked.touch()
        with pytest.raises(p.ProbeFailed, match="no longer holds its file lock"):
            p._check_running(proc.pid, port, unlocked, "verify")

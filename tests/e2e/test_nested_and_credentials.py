"""Nested tars and CRIU credentials on real Podman, runc and CRIU.

An honest container with a named volume, /dev/shm content, a tmpfs mount and a reduced capability
set goes through ferry (its nested tars rebuilt by ferry) and comes back whole on another store,
with the same capabilities. The same snapshot with one core image re-encoded to every capability
and seccomp off is refused before Podman creates anything. ferry's decoder reads the real images
as `crit decode` does.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ferry.archive import criu_images as ci
from ferry.archive import protowire as pw
from ferry.archive import seccomp_bpf
from ferry.archive.syscalls_x86_64 import SYSCALLS
from ferry.errors import UnsafeArchiveError
from flows.restore import restore
from flows.snapshot import snapshot
from tests import criu_edit
from tests import hostile_corpus as hc
from tests.helpers import IMAGE, ULIMITS, Host, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]

WORKLOAD = (
    "echo shm > /dev/shm/s; echo vol > /vol/v; mkdir -p /tm/d; echo tm > /tm/d/t; ln -s /etc /tm/l; "
    "truncate -s 1048576 /tm/sparse; echo end >> /tm/sparse; "
    "i=0; while :; do i=$((i+1)); echo $i > /data/counter; usleep 20000; done"
)
CAPS = ("--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "NET_BIND_SERVICE")


def _run(host: Host) -> None:
    host.podman("volume", "create", "appvol")
    host.podman(
        "run",
        "-d",
        "--name",
        "app",
        *ULIMITS,
        *CAPS,
        "-v",
        "appvol:/vol",
        "--tmpfs",
        "/tm",
        IMAGE,
        "sh",
        "-c",
        WORKLOAD,
    )
    wait_for(lambda: host.counter("app") >= 20, what="app to start counting")


def _status(host: Host, field: str) -> str:
    for line in host.exec("app", "cat", "/proc/1/status").splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in /proc/1/status")


def _snapshot(host: Host, store: Path) -> hc.Unpacked:
    result = snapshot("app", f"file://{store}", leave_running=True)
    return hc.Unpacked.parse(Path(result.url.removeprefix("file://")).read_bytes())


def _dumped_cores(archive: hc.Unpacked) -> set[str]:
    tree = next(m for m in archive.members if m.info.name == "checkpoint/pstree.img")
    return {f"checkpoint/core-{tid}.img" for tid in ci.restored_threads("pstree.img", tree.data or b"")}


def _sparse_entries(archive: hc.Unpacked) -> list[str]:
    found = []
    for m in archive.members:
        if m.info.name.startswith("checkpoint/tmpfs-dev-") and m.data:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(m.data)), mode="r:") as tar:
                found += [i.name for i in tar if i.type == tarfile.GNUTYPE_SPARSE]
    return found


def test_an_honest_container_with_volume_shm_and_tmpfs_restores_after_the_rebuild(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(host)
    cap_eff, seccomp = _status(host, "CapEff"), _status(host, "Seccomp")
    counted = host.counter("app")
    result = snapshot("app", f"file://{tmp_path}/store")
    archive = hc.Unpacked.parse(Path(result.url.removeprefix("file://")).read_bytes())
    names = {m.info.name for m in archive.members}
    assert {"devshm-checkpoint.tar", "volumes/appvol.tar"} <= names, names
    assert any(n.startswith("checkpoint/tmpfs-dev-") and n.endswith(".tar.gz.img") for n in names), names
    assert _sparse_entries(archive) == ["./sparse"], "CRIU's tar --sparse wrote /tm/sparse as a GNU sparse entry"
    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)

    restored = restore(result.url)

    assert restored.name == "app"
    assert other_host.state("app") == "running"
    wait_for(lambda: other_host.counter("app") > counted + 10, what="app to keep counting")
    assert other_host.exec("app", "cat", "/dev/shm/s").strip() == "shm"
    assert other_host.exec("app", "cat", "/vol/v").strip() == "vol"
    assert other_host.exec("app", "cat", "/tm/d/t").strip() == "tm"
    assert other_host.exec("app", "ls", "-l", "/tm/l").strip().endswith("-> /etc")
    assert other_host.exec("app", "wc", "-c", "/tm/sparse").split()[0] == str((1 << 20) + 4)  # CRIU's tar --sparse
    assert other_host.exec("app", "tail", "-c", "4", "/tm/sparse") == "end\n"
    assert (_status(other_host, "CapEff"), _status(other_host, "Seccomp")) == (cap_eff, seccomp)
    assert seccomp == "2"


def test_a_second_snapshot_carries_the_first_dumps_core_images_and_still_restores(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Podman leaves the first dump's images in the checkpoint directory: the second archive holds
    core images of the shell's children long gone, which CRIU never reads (pstree.img does not
    name them) and whose filter indices may point past the new seccomp.img. ferry checks what CRIU
    restores and so restores the archive."""
    host.run_workload("app")
    for _ in range(5):  # the shell forks usleep every 5 ms: a dump can fall between two children
        first = _snapshot(host, tmp_path / "store")
        if len(_dumped_cores(first)) > 1:
            break
    else:
        pytest.fail("five dumps in a row caught the shell with no child: no stale core image to carry")
    wait_for(lambda: host.counter("app") > 0, what="app to count on")
    result = snapshot("app", f"file://{tmp_path}/store", leave_running=True)
    second = hc.Unpacked.parse(Path(result.url.removeprefix("file://")).read_bytes())
    named = _dumped_cores(second)
    cores = {m.info.name for m in second.members if ci.CORE_IMAGE.fullmatch(Path(m.info.name).name)}
    assert named < cores, f"no stale core image travelled: pstree names {sorted(named)}, archive has {sorted(cores)}"
    counted = host.counter("app")
    host.podman("rm", "-f", "-t", "0", "app")  # its IP is free again (CNI allocation is machine-wide)
    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)

    restore(result.url)

    assert other_host.state("app") == "running"
    wait_for(lambda: other_host.counter("app") > counted + 10, what="the restored app to keep counting")


def test_an_escalated_core_image_is_refused_before_podman_creates_anything(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(host)
    base = _snapshot(host, tmp_path / "seed")
    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)
    sentinel = hc.make_sentinel(tmp_path / "sentinel")
    before = hc.tree_state(sentinel), other_host.names(), other_host.podman("volume", "ls", "-q").stdout
    for build in (hc.core_escalated, hc.core_root_for_non_root_spec):
        case = build(base, str(sentinel))
        url = hc.put_in_store(case, tmp_path / "store")

        with pytest.raises(UnsafeArchiveError, match=case.match):
            restore(url, name="escalated")

        after = hc.tree_state(sentinel), other_host.names(), other_host.podman("volume", "ls", "-q").stdout
        assert after == before, "the restore changed the host"
        assert other_host.podman("container", "exists", "escalated", check=False).returncode == 1


def _crit(path: Path) -> dict[str, Any]:
    proc = subprocess.run(["crit", "decode", "-i", str(path)], capture_output=True, check=True)
    decoded: dict[str, Any] = json.loads(proc.stdout)
    return decoded


def test_the_decoder_reads_real_images_as_crit_does(host: Host, tmp_path: Path) -> None:
    _run(host)
    base = _snapshot(host, tmp_path / "store")
    cores = [m for m in base.members if ci.CORE_IMAGE.fullmatch(Path(m.info.name).name)]
    assert cores
    for member in cores:
        path = tmp_path / Path(member.info.name).name
        path.write_bytes(member.data or b"")
        want = _crit(path)["entries"][0]["thread_core"]
        _magic, (entry,) = criu_edit.entries(member.data or b"")
        thread = pw.fields(pw.message(pw.fields(entry), ci.CORE_THREAD_CORE) or b"")
        creds = pw.fields(pw.message(thread, ci.THREAD_CREDS) or b"")
        for name, number in ci.CREDS_IDS.items():
            assert pw.uint32(creds, number) == want["creds"][name], name
        for crit_name, number in (("cap_eff", 11), ("cap_prm", 10), ("cap_inh", 9), ("cap_bnd", 12)):
            assert pw.repeated_uint32(creds, number) == want["creds"][crit_name], crit_name
        assert pw.uint32(thread, ci.THREAD_SECCOMP_MODE) == {"filter": 2}[want["seccomp_mode"]]
        assert pw.uint32(thread, ci.THREAD_SECCOMP_FILTER) == want.get("seccomp_filter", 0)
        # and an edited image decodes, under crit too, to what the edit says
        path.write_bytes(criu_edit.escalate(member.data or b""))
        edited = _crit(path)["entries"][0]["thread_core"]
        assert edited["creds"]["cap_eff"] == criu_edit.FULL_CAPS
        assert edited.get("seccomp_mode", "disabled") == "disabled"
    tree = next(m for m in base.members if m.info.name == "checkpoint/pstree.img")
    path = tmp_path / "pstree.img"
    path.write_bytes(tree.data or b"")
    tasks = _crit(path)["entries"]
    assert ci.restored_threads("pstree.img", tree.data or b"") == list(
        dict.fromkeys(tid for task in tasks for tid in [task["pid"], *task.get("threads", [])])
    )
    seccomp = next(m for m in base.members if m.info.name == "checkpoint/seccomp.img")
    programs = [program for program, _prev in ci.seccomp_filters("seccomp.img", seccomp.data or b"")]
    must_deny = seccomp_bpf.host_default_denials()
    assert must_deny and all(seccomp_bpf.denies(p, nr) for p in programs for nr in must_deny)
    assert not any(seccomp_bpf.denies(p, SYSCALLS["read"]) for p in programs)
    path = tmp_path / "seccomp.img"
    path.write_bytes(seccomp.data or b"")
    filters = _crit(path)["entries"][0]["seccomp_filters"]
    assert len(ci.seccomp_filters("seccomp.img", seccomp.data or b"")) == len(filters)

"""ferry inspect, without root: forged archives with real CRIU images made by `crit encode`."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest

from ferry import runtime
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import verify
from ferry.archive.rebuild_context import RebuildContext
from ferry.cli.inspect import inspect_archive
from ferry.errors import ArchiveNotFoundError, UnsupportedArchiveError
from ferry.inspection import compat as host_compat
from ferry.inspection_view import format_inspection
from ferry.restore_policy import RestorePolicy
from ferry.runtime import Podman
from storage.store import SIDECAR_SUFFIX
from tests.archive_forge import MIN_MEMBERS, Entry, Forge, real_config, real_spec
from tests.helpers import signed_sidecar

DIFF = [
    Entry("data", type=tarfile.DIRTYPE, mode=0o755),
    Entry("data/log", b"1\n2\n3\n"),
    Entry("data/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    Entry("data/hard", type=tarfile.LNKTYPE, linkname="data/log"),
]
ARGS = ["sh", "-c", "echo hi; sleep 1000"]
CONFIG = real_config(id="a" * 64, runtime="runc")
SPEC = real_spec()
SPEC["process"]["args"] = ARGS
# These core images (crit-encoded by hand) carry no seccomp filter, so the spec may not claim one,
# and this host's restore policy must let a container without seccomp through.
del SPEC["linux"]["seccomp"]


@pytest.fixture(autouse=True)
def _unconfined_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "restore-policy.json"
    policy.write_text('{"unconfined": true}')
    monkeypatch.setenv("FERRY_RESTORE_POLICY", str(policy))


def crit_encode(image: dict[str, Any]) -> bytes:
    """A real CRIU image: crit (Debian's criu package) encodes JSON, no root needed."""
    crit = shutil.which("crit")
    if crit is None:
        pytest.fail("this test needs crit (apt-get install criu)", pytrace=False)
    proc = subprocess.run([crit, "encode"], input=json.dumps(image).encode(), capture_output=True, check=True)
    return proc.stdout


def core(comm: str) -> bytes:
    tc = {"task_state": 1, "exit_code": 0, "personality": 0, "flags": 0, "blk_sigset": 0, "comm": comm}
    ids = dict.fromkeys(("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid"), 0)
    creds = {**ids, "secbits": 0, "cap_inh": [0, 0], "cap_prm": [0, 0], "cap_eff": [0, 0], "cap_bnd": [0, 0]}
    thread = {"futex_rla": 0, "futex_rla_len": 0, "creds": creds}  # ferry refuses a live task without creds
    return crit_encode({"magic": "CORE", "entries": [{"mtype": "X86_64", "tc": tc, "thread_core": thread}]})


def pstree(*procs: tuple[int, int]) -> bytes:
    entries = [{"pid": pid, "ppid": ppid, "pgid": 1, "sid": 1, "threads": [pid]} for pid, ppid in procs]
    return crit_encode({"magic": "PSTREE", "entries": entries})


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    return {
        "checkpoint/pstree.img": pstree((1, 0), (7, 1)),
        "checkpoint/core-1.img": core("sh"),
        "checkpoint/core-7.img": core("sleep"),
        "checkpoint/pages-1.img": b"\x00" * 8192,
        "checkpoint/pages-2.img": b"\x01" * 4096,
        "config.dump": json.dumps(CONFIG).encode(),
        "spec.dump": json.dumps(SPEC).encode(),
    }


class FakePodman(Podman):
    def __init__(self, containers: frozenset[str] = frozenset(), images: frozenset[str] = frozenset()) -> None:
        super().__init__(["podman"])
        self.containers, self.images = set(containers), set(images)

    def exists(self, container: str) -> bool:
        return container in self.containers

    def image_exists(self, image: str) -> bool:
        return image in self.images


@pytest.fixture(autouse=True)
def host_criu(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """`criu check` and `criu cpuinfo check` need root: stand in for them, recording the
    directory the cpuinfo check was pointed at and what it held."""
    seen: list[Path] = []

    def cpuinfo_check(folder: Path) -> tuple[bool, str]:
        seen.append(folder)
        assert sorted(p.name for p in folder.iterdir()) == ["cpuinfo.img"]
        return folder.joinpath("cpuinfo.img").read_bytes() == b"same cpu", "checked"

    monkeypatch.setattr(host_compat, "criu_check", lambda: (True, ""))
    # not the archive's 4.1.1: the check must show which version is whose
    monkeypatch.setattr(host_compat, "criu_version", lambda: "9.9.9-host")
    monkeypatch.setattr(host_compat, "cpuinfo_check", cpuinfo_check)
    return seen


def store(tmp_path: Path, forge: Forge, *, sidecar: bool = True) -> str:
    data = forge.bytes()
    path = tmp_path / "store" / "app" / "20261127T000000Z-h-aaaaaaaaaaaa.tar.zst"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if sidecar:
        report = verify(io.BytesIO(data), ctx=RebuildContext(policy=RestorePolicy(unconfined=True)))
        assert report.manifest is not None
        record = Sidecar(path.name, len(data), report.archive_sha256, report.compression, report.manifest)
        path.with_name(path.name + SIDECAR_SUFFIX).write_bytes(signed_sidecar(record.to_json()))
    return f"file://{path}"


def forge(images: dict[str, bytes], **kwargs: Any) -> Forge:
    return Forge(members={**MIN_MEMBERS, **images}, diff=DIFF, deleted=b'["/etc/deleteme", "/etc/x"]', **kwargs)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_a_verified_archive_is_described_completely(tmp_path: Path, images: dict[str, bytes], compression: str) -> None:
    url = store(tmp_path, forge(images, compression=compression))

    data = inspect_archive(url, runtime=FakePodman(images=frozenset({"f" * 64})))

    assert data["verified"] is True, data["verification"]
    assert data["container"] == {"name": "app", "id": "a" * 64}
    assert data["image"] == {"name": "img", "id": "f" * 64}
    assert data["engine"] == "podman" and data["runtime"] == "runc"
    assert data["source"] == {"host": "h", "kernel": "k", "criu": "4.1.1", "podman": "4.3.1"}
    assert data["created"] == "2026-11-27T00:00:00.000Z" and data["mode"] == "stop"
    assert data["compression"] == compression
    assert data["command"] == ARGS
    sizes = data["sizes"]
    assert sizes["archive"] == Path(url.removeprefix("file://")).stat().st_size
    assert sizes["memory_pages"] == 8192 + 4096  # pages-1.img replaces the forge's default one
    assert sizes["rootfs_diff"] > 0 and sizes["changed_files"] == 4 and sizes["deleted_files"] == 2
    assert sizes["total"] > sizes["memory_pages"] + sizes["rootfs_diff"]
    assert [(p["pid"], p["ppid"], p["comm"]) for p in data["processes"]] == [(1, 0, "sh"), (7, 1, "sleep")]
    compat = data["compatibility"]
    assert compat["criu"] == {
        "ok": True,
        "detail": "criu 9.9.9-host passes `criu check` (the archive was dumped by CRIU 4.1.1)",
    }
    assert compat["cpu"] == {"ok": None, "detail": "no cpuinfo image in the archive; not checked"}
    assert compat["image"]["ok"] is True
    assert compat["name"]["ok"] is True
    assert data["notes"] == []
    json.dumps(data)  # the CLI prints it with --json


def test_taken_name_and_missing_image_fail_the_host_checks(tmp_path: Path, images: dict[str, bytes]) -> None:
    data = inspect_archive(store(tmp_path, forge(images)), runtime=FakePodman(containers=frozenset({"app"})))
    assert data["compatibility"]["name"]["ok"] is False
    assert "--name" in data["compatibility"]["name"]["detail"]
    assert data["compatibility"]["image"]["ok"] is False
    assert "not on this host" in data["compatibility"]["image"]["detail"]


def test_cpuinfo_is_checked_in_a_directory_of_its_own(
    tmp_path: Path, images: dict[str, bytes], host_criu: list[Path]
) -> None:
    for cpu, ok in ((b"same cpu", True), (b"other cpu", False)):
        url = store(tmp_path / cpu.decode(), forge({**images, "checkpoint/cpuinfo.img": cpu}))
        data = inspect_archive(url, runtime=FakePodman())
        assert data["compatibility"]["cpu"] == {"ok": ok, "detail": "checked"}
    assert len(host_criu) == 2
    assert not host_criu[0].exists(), "the temporary directory must be gone afterwards"


def test_an_archive_without_sidecar_is_shown_but_not_verified(tmp_path: Path, images: dict[str, bytes]) -> None:
    data = inspect_archive(store(tmp_path, forge(images), sidecar=False), runtime=FakePodman())
    assert data["verified"] is False
    assert "no sidecar" in data["verification"]
    assert data["container"]["name"] == "app" and data["command"] == ARGS


def test_a_podman_export_without_manifest_is_shown(tmp_path: Path, images: dict[str, bytes]) -> None:
    data = inspect_archive(store(tmp_path, forge(images, manifest=False), sidecar=False), runtime=FakePodman())
    assert data["verified"] is False and "no ferry manifest" in data["verification"]
    assert data["source"] == {"host": "", "kernel": "", "criu": "", "podman": ""}
    assert data["mode"] is None and data["created"].endswith("Z")
    assert data["container"]["id"] == "a" * 64 and data["runtime"] == "runc"
    assert len(data["processes"]) == 2
    assert "unknown (no ferry manifest)" in format_inspection(data)


def test_a_corrupted_archive_still_shows_what_it_holds(tmp_path: Path, images: dict[str, bytes]) -> None:
    url = store(tmp_path, forge(images, compression="none"))
    path = Path(url.removeprefix("file://"))
    raw = bytearray(path.read_bytes())
    at = raw.index(b"\x01" * 4096)  # flip a byte inside a memory page: same size, wrong hash
    raw[at] = 0x02
    path.write_bytes(bytes(raw))

    data = inspect_archive(url, runtime=FakePodman())

    assert data["verified"] is False
    assert "sha256" in data["verification"]
    assert data["command"] == ARGS and len(data["processes"]) == 2


def test_hostile_members_are_skipped_and_nothing_is_written_outside_a_temp_dir(
    tmp_path: Path, images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    hostile = [
        Entry("../evil", b"x"),
        Entry("checkpoint/../../core-1.img", b"x"),
        Entry("checkpoint/link", type=tarfile.SYMTYPE, linkname="/etc"),
    ]
    url = store(tmp_path, forge(images, extra=hostile), sidecar=False)

    data = inspect_archive(url, runtime=FakePodman())

    assert data["verified"] is False and "'..'" in data["verification"]
    assert any("../evil" in note for note in data["notes"])
    assert [p["comm"] for p in data["processes"]] == ["sh", "sleep"]
    assert list(scratch.iterdir()) == [], "the temp dir is removed"
    assert not (tmp_path / "evil").exists() and not (tmp_path / "store" / "evil").exists()


def test_a_hostile_rootfs_diff_or_deleted_list_hides_only_itself(tmp_path: Path, images: dict[str, bytes]) -> None:
    bad = Forge(members={**MIN_MEMBERS, **images}, diff=[Entry("../../etc/cron.d/x", b"x")], deleted=b'["/.."]')
    data = inspect_archive(store(tmp_path, bad, sidecar=False), runtime=FakePodman())
    assert data["verified"] is False
    notes = " ".join(data["notes"])
    assert "rootfs-diff.tar" in notes and "deleted.files" in notes
    assert data["command"] == ARGS


def test_a_garbled_core_image_leaves_the_process_unnamed(tmp_path: Path, images: dict[str, bytes]) -> None:
    garbled = {**images, "checkpoint/core-7.img": b"not a criu image"}
    data = inspect_archive(store(tmp_path, forge(garbled), sidecar=False), runtime=FakePodman())
    assert [(p["pid"], p["comm"]) for p in data["processes"]] == [(1, "sh"), (7, "")]
    assert any("core-7.img" in note for note in data["notes"])
    assert data["verified"] is False  # verify refuses a core image it cannot read


def test_without_crit_the_processes_are_missing_with_the_fix(
    tmp_path: Path, images: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.tools, "CRIT", str(tmp_path / "no-crit"))
    data = inspect_archive(store(tmp_path, forge(images)), runtime=FakePodman())
    assert data["processes"] == []
    assert any("apt-get install criu" in note for note in data["notes"])
    assert data["verified"] is True


def test_a_large_archive_streams_through_both_readers(tmp_path: Path, images: dict[str, bytes]) -> None:
    pages = bytes(range(256)) * (24 << 12)  # 24 MiB, many queue chunks: exercises back-pressure
    data = inspect_archive(store(tmp_path, forge({**images, "checkpoint/pages-3.img": pages})), runtime=FakePodman())
    assert data["verified"] is True
    assert data["sizes"]["memory_pages"] >= len(pages)


def test_not_an_archive_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.zst"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 1000)
    with pytest.raises(UnsupportedArchiveError, match="neither zstd, gzip nor tar"):
        inspect_archive(f"file://{path}", runtime=FakePodman())
    with pytest.raises(ArchiveNotFoundError):
        inspect_archive(f"file://{tmp_path}/missing.tar.zst", runtime=FakePodman())


def test_text_view_shows_the_tree_and_escapes_hostile_names(tmp_path: Path, images: dict[str, bytes]) -> None:
    hostile = {**images, "checkpoint/core-7.img": core("\x1b[31mred")}
    text = format_inspection(
        inspect_archive(store(tmp_path, forge(hostile)), runtime=FakePodman(containers=frozenset({"app"})))
    )
    assert "\x1b" not in text and "\\x1b[31mred" in text
    assert "[1] sh\n" in text and "  [7] \\x1b" in text
    assert "Container:  app (aaaaaaaaaaaa)" in text
    assert "Command:    sh -c 'echo hi; sleep 1000'" in text
    assert "[FAIL] name:" in text and "[ok]   criu:" in text and "[?]    cpu:" in text


def test_an_unsigned_archive_is_not_verified_unless_allowed(tmp_path: Path, images: dict[str, bytes]) -> None:
    url = store(tmp_path, forge(images))
    sidecar = Path(url.removeprefix("file://") + SIDECAR_SUFFIX)
    record = json.loads(sidecar.read_bytes())
    record["signature"] = ""
    sidecar.write_text(json.dumps(record))

    refused = inspect_archive(url, runtime=FakePodman())
    allowed = inspect_archive(url, runtime=FakePodman(), allow_unsigned=True)

    assert refused["verified"] is False and "not signed" in refused["verification"]
    assert allowed["verified"] is True and "UNSIGNED" in allowed["verification"]
    assert refused["command"] == allowed["command"] == ARGS  # shown all the same

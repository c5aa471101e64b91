"""The archive reader: valid archives verify; hostile and broken ones are refused by name."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from ferry.archive.compression import detect
from ferry.archive.manifest import Manifest, Sidecar
from ferry.archive.reader import rewrite, verify
from ferry.errors import ArchiveError, IntegrityError, UnsafeArchiveError, UnsupportedArchiveError
from tests.archive_forge import Entry, Forge

DIFF = [
    Entry("data", type=tarfile.DIRTYPE, mode=0o755),
    Entry("data/log", b"1\n2\n3\n"),
    Entry("data/link", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
    Entry("data/hard", type=tarfile.LNKTYPE, linkname="data/log"),
]


def _verify(forge: Forge, **kwargs: object):  # type: ignore[no-untyped-def]
    return verify(io.BytesIO(forge.bytes()), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_valid_archive_verifies_in_every_compression(compression: str) -> None:
    forge = Forge(diff=DIFF, deleted=b'["/etc/deleteme"]', compression=compression)
    report = _verify(forge)
    assert report.compression == compression
    assert report.name == "app" and report.image_id == "f" * 64
    assert report.deleted == ["etc/deleteme"]
    assert report.diff_files == 2 and report.diff_bytes == 6
    assert set(report.members) >= {"checkpoint/inventory.img", "config.dump", "rootfs-diff.tar"}


def test_compression_is_detected_by_magic_not_name() -> None:
    assert detect(Forge(compression="zstd").bytes()[:512]) == "zstd"
    assert detect(Forge(compression="gzip").bytes()[:512]) == "gzip"
    assert detect(Forge(compression="none").bytes()[:512]) == "none"
    with pytest.raises(UnsupportedArchiveError, match="neither zstd, gzip nor tar"):
        detect(b"PK\x03\x04 a zip file")


def test_sidecar_must_match_the_archive_bytes() -> None:
    data = Forge().bytes()
    report = verify(io.BytesIO(data))
    assert report.manifest is not None
    good = Sidecar("x.tar.zst", len(data), report.archive_sha256, "zstd", report.manifest)
    verify(io.BytesIO(data), sidecar=good)
    bad = Sidecar("x.tar.zst", len(data), "0" * 64, "zstd", report.manifest)
    with pytest.raises(IntegrityError, match="sha256"):
        verify(io.BytesIO(data), sidecar=bad)


HOSTILE_OUTER = {
    "dotdot member": [Entry("../evil", b"x")],
    "absolute member": [Entry("/etc/evil", b"x")],
    "symlink member": [Entry("checkpoint/link", type=tarfile.SYMTYPE, linkname="/etc")],
    "device member": [Entry("checkpoint/dev", type=tarfile.CHRTYPE, devmajor=1)],
    "duplicate member": [Entry("config.dump", b"{}")],
}


@pytest.mark.parametrize("extra", HOSTILE_OUTER.values(), ids=HOSTILE_OUTER.keys())
def test_hostile_outer_members_are_refused(extra: list[Entry]) -> None:
    with pytest.raises(UnsafeArchiveError):
        _verify(Forge(extra=extra))


HOSTILE_DIFF = {
    "dotdot": [Entry("../../etc/cron.d/evil", b"x")],
    "absolute": [Entry("/etc/evil", b"x")],
    "write through own symlink": [
        Entry("escape", type=tarfile.SYMTYPE, linkname="/"),
        Entry("escape/etc/shadow", b"x"),
    ],
    "hardlink outside": [Entry("h", type=tarfile.LNKTYPE, linkname="../../etc/shadow")],
    "hardlink to unknown": [Entry("h", type=tarfile.LNKTYPE, linkname="etc/shadow")],
    "char device": [Entry("dev/mem", type=tarfile.CHRTYPE, devmajor=1)],
    "block device": [Entry("dev/sda", type=tarfile.BLKTYPE, devmajor=8)],
    "fifo": [Entry("run/fifo", type=tarfile.FIFOTYPE)],
    "setuid": [Entry("bin/su", b"x", mode=0o4755)],
    "setgid": [Entry("bin/sg", b"x", mode=0o2755)],
}


@pytest.mark.parametrize("diff", HOSTILE_DIFF.values(), ids=HOSTILE_DIFF.keys())
def test_hostile_rootfs_diffs_are_refused(diff: list[Entry]) -> None:
    with pytest.raises(UnsafeArchiveError):
        _verify(Forge(diff=diff))


@pytest.mark.parametrize(
    "deleted", [b'["../../etc/passwd"]', b'["/a/../../b"]', b'{"a": 1}', b"[1]", b'["/"]', b"not json"]
)
def test_hostile_deleted_files_are_refused(deleted: bytes) -> None:
    with pytest.raises(UnsafeArchiveError, match="deleted.files"):
        _verify(Forge(deleted=deleted))


def test_member_larger_than_the_manifest_says_is_refused() -> None:
    original = Forge()
    manifest = _inner_manifest(original.plain())
    grown = dict(original.members, **{"config.dump": original.members["config.dump"] + b" " * 10})
    forged = Forge(members=grown, manifest=False, extra=[Entry("ferry-manifest.json", manifest)])
    with pytest.raises(IntegrityError, match="config.dump"):
        verify(io.BytesIO(forged.bytes()))


def _inner_manifest(plain: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        member = tar.extractfile("ferry-manifest.json")
        assert member is not None
        return member.read()


def test_missing_manifest_is_refused_unless_allowed() -> None:
    with pytest.raises(UnsupportedArchiveError, match="--allow-unverified"):
        _verify(Forge(manifest=False))
    report = _verify(Forge(manifest=False), require_manifest=False)
    assert report.manifest is None


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"version": 99}, "version 99"),
        ({"format": "something-else"}, "format"),
        ({"members": "nope"}, "malformed"),
    ],
)
def test_bad_manifests_are_refused(edit: dict[str, object], match: str) -> None:
    with pytest.raises(UnsupportedArchiveError, match=match):
        _verify(Forge(manifest_edit=edit))


def test_missing_inventory_is_refused() -> None:
    members = {k: v for k, v in Forge().members.items() if k != "checkpoint/inventory.img"}
    with pytest.raises(UnsupportedArchiveError, match="inventory.img"):
        _verify(Forge(members=members))


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_truncated_streams_are_refused(compression: str) -> None:
    data = Forge(diff=DIFF, compression=compression).bytes()
    with pytest.raises(ArchiveError):
        verify(io.BytesIO(data[: len(data) * 2 // 3]))


def test_bit_flips_are_refused() -> None:
    data = bytearray(Forge(diff=DIFF, compression="none").bytes())
    data[700] ^= 0x01  # inside the first member's data
    with pytest.raises(ArchiveError):
        verify(io.BytesIO(bytes(data)))


def test_decompression_bomb_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    big = Forge(members={**Forge().members, "checkpoint/pages-1.img": b"\x00" * (8 << 20)})
    data = big.bytes()
    assert len(data) < 64 << 10  # tiny on the wire...
    monkeypatch.setenv("FERRY_MAX_EXPANDED_BYTES", str(1 << 20))
    with pytest.raises(UnsafeArchiveError, match="decompression bomb"):
        verify(io.BytesIO(data))


def test_rewrite_gives_podman_a_clean_plain_tar() -> None:
    forge = Forge(diff=[Entry("./data/x", b"hello", mode=0o1755)], deleted=b'["data/gone"]')
    data = forge.bytes()
    report = verify(io.BytesIO(data))
    out = io.BytesIO()
    seen: list[str] = []
    rewrite(io.BytesIO(data), out, expected=report, check_diff_path=seen.append)
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tar:  # uncompressed
        names = tar.getnames()
        assert "ferry-manifest.json" in names
        deleted = tar.extractfile("deleted.files")
        assert deleted is not None and json.loads(deleted.read()) == ["/data/gone"]
        diff_member = tar.extractfile("rootfs-diff.tar")
        assert diff_member is not None
        with tarfile.open(fileobj=io.BytesIO(diff_member.read())) as diff:
            assert diff.getnames() == ["data/x"]
            assert diff.getmember("data/x").mode == 0o1755
    assert sorted(seen) == ["data/gone", "data/x"]


def test_manifest_roundtrip() -> None:
    report = _verify(Forge())
    assert report.manifest is not None
    assert Manifest.from_json(report.manifest.to_json()) == report.manifest

"""Nested tars (rootfs diff, /dev/shm, volumes, CRIU tmpfs images): every rule, and the rebuild."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.archive import nested
from ferry.archive.reader import rewrite, verify
from ferry.errors import ArchiveError, IntegrityError, UnsafeArchiveError
from tests.archive_forge import MIN_MEMBERS, Entry, Forge, real_config, real_spec, tar_bytes

SYM, LNK, DIR, CHR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE
DIFF = nested.Kind("rootfs-diff.tar", keep_root=False)
SHM = nested.Kind("devshm-checkpoint.tar")
TMPFS = nested.kind_of("checkpoint/tmpfs-dev-57.tar.gz.img")
assert TMPFS is not None
KINDS = [DIFF, SHM, nested.Kind("volumes/data.tar"), TMPFS]


def packed(kind: nested.Kind, data: bytes) -> bytes:
    return gzip.compress(data, mtime=0) if kind.gzip else data


def check(kind: nested.Kind, entries: list[Entry] | bytes) -> bytes:
    """Check and rebuild; returns the rebuilt tar, uncompressed."""
    data = packed(kind, entries if isinstance(entries, bytes) else tar_bytes(entries))
    sink = io.BytesIO()
    nested.rebuild(io.BytesIO(data), kind, sink, compressed_size=len(data))
    out = sink.getvalue()
    return gzip.decompress(out) if kind.gzip else out


def listing(tar: bytes) -> list[tuple[str, bytes, int, str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as t:
        out = []
        for i in t:
            f = t.extractfile(i) if i.isreg() else None
            out.append((i.name, i.type, i.mode, i.linkname, f.read() if f else b""))
        return out


def dev(name: str, major: int, minor: int) -> Entry:
    return Entry(name, type=CHR, devmajor=major, mode=0o666)


def info_dev(name: str, major: int, minor: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor, info.mode = CHR, major, minor, 0o666
    return info


# -- what real archives hold passes, and comes out the same -------------------------------------


def test_a_real_dev_tmpfs_image_passes_with_its_runtime_devices() -> None:
    """The layout CRIU wrote for /dev in a real Podman export (see the e2e test)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        root = tarfile.TarInfo("./")
        root.type, root.mode = DIR, 0o755
        tar.addfile(root)
        for name, target in (("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd"), ("ptmx", "pts/ptmx")):
            link = tarfile.TarInfo(f"./{name}")
            link.type, link.linkname = SYM, target
            tar.addfile(link)
        for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("tty", 5, 0), ("urandom", 1, 9)):
            tar.addfile(info_dev(f"./{name}", major, minor))
        for d in ("pts", "mqueue", "shm"):
            sub = tarfile.TarInfo(f"./{d}/")
            sub.type, sub.mode = DIR, 0o755
            tar.addfile(sub)
    out = listing(check(TMPFS, buf.getvalue()))
    assert [n for n, *_ in out] == [
        ".",
        "stderr",
        "fd",
        "ptmx",
        "null",
        "zero",
        "tty",
        "urandom",
        "pts",
        "mqueue",
        "shm",
    ]
    with tarfile.open(fileobj=io.BytesIO(check(TMPFS, buf.getvalue())), mode="r:") as t:
        assert [(i.devmajor, i.devminor) for i in t if i.ischr()] == [(1, 3), (1, 5), (5, 0), (1, 9)]


@pytest.mark.parametrize("kind", [SHM, nested.Kind("volumes/data.tar"), DIFF])
def test_runtime_devices_are_refused_outside_crius_tmpfs_images(kind: nested.Kind) -> None:
    data = tar_bytes([])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info_dev("null", 1, 3))
    with pytest.raises(UnsafeArchiveError, match="character device"):
        check(kind, buf.getvalue())
    assert check(kind, data) == check(kind, data)


def test_other_devices_are_refused_in_tmpfs_images() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(info_dev("mem", 1, 1))
    with pytest.raises(UnsafeArchiveError, match="'mem' is a character device"):
        check(TMPFS, buf.getvalue())


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.where)
def test_an_honest_tree_is_rebuilt_entry_for_entry(kind: nested.Kind) -> None:
    entries = [
        Entry("d", type=DIR, mode=0o1777),
        Entry("d/f", b"data", mode=0o640),
        Entry("d/l", type=SYM, linkname="/etc/passwd"),
        Entry("d/h", type=LNK, linkname="d/f"),
        Entry("e/deep/g", b"g"),
    ]
    out = listing(check(kind, entries))
    assert out == [
        ("d", DIR, 0o1777, "", b""),
        ("d/f", tarfile.REGTYPE, 0o640, "", b"data"),
        ("d/l", SYM, 0o644, "/etc/passwd", b""),
        ("d/h", LNK, 0o644, "d/f", b""),
        ("e/deep/g", tarfile.REGTYPE, 0o644, "", b"g"),
    ]


def test_the_rebuild_drops_owner_names_xattrs_and_setgid_on_directories() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("d")
        d.type, d.mode, d.uname = DIR, 0o2775, "root"
        tar.addfile(d)
        f = tarfile.TarInfo("d/ping")
        f.size, f.uid, f.uname = 1, 1000, "someone"
        f.pax_headers = {"SCHILY.xattr.security.capability": "\x01\x00\x00\x02 \x00\x00\x00"}
        tar.addfile(f, io.BytesIO(b"x"))
    with tarfile.open(fileobj=io.BytesIO(check(SHM, buf.getvalue())), mode="r:") as t:
        d_out, f_out = t.getmembers()
        assert (d_out.mode, d_out.uname) == (0o775, "")
        assert (f_out.uid, f_out.uname, f_out.pax_headers) == (1000, "", {})


# -- every refusal -----------------------------------------------------------------------------

REFUSED: dict[str, tuple[list[Entry], str]] = {
    "absolute": ([Entry("/etc/passwd", b"x")], "is absolute"),
    "dotdot": ([Entry("a/../../x", b"x")], r"contains '\.\.'"),
    "below-symlink": ([Entry("l", type=SYM, linkname="/"), Entry("l/etc/x", b"x")], "go through the symlink 'l'"),
    "deep-below-symlink": (
        [Entry("a/l", type=SYM, linkname="../.."), Entry("a/l/b/c", type=DIR, mode=0o755)],
        "go through the symlink 'a/l'",
    ),
    "file-twice": ([Entry("f", b"1"), Entry("f", b"2")], "'f' occurs twice"),
    "dir-then-symlink": ([Entry("d", type=DIR, mode=0o755), Entry("d", type=SYM, linkname="/")], "'d' occurs twice"),
    "dir-twice": ([Entry("d", type=DIR, mode=0o755), Entry("d/", type=DIR, mode=0o700)], "'d' occurs twice"),
    "root-twice": ([Entry(".", type=DIR, mode=0o755), Entry("./", type=DIR, mode=0o777)], "'.' occurs twice"),
    "root-as-file": ([Entry(".", b"x")], "empty name"),
    "implicit-parent-remade-as-symlink": (
        [Entry("d/f", b"x"), Entry("d", type=SYM, linkname="/")],
        "in place of a directory",
    ),
    "hardlink-parent-remade-as-symlink": (
        [Entry("d/f", b"x"), Entry("d", type=SYM, linkname="/"), Entry("h", type=LNK, linkname="d/f")],
        "in place of a directory",
    ),
    "hardlink-to-later-file": ([Entry("h", type=LNK, linkname="f"), Entry("f", b"x")], "not a regular file earlier"),
    "hardlink-to-symlink": (
        [Entry("l", type=SYM, linkname="/etc/shadow"), Entry("h", type=LNK, linkname="l")],
        "not a regular file earlier",
    ),
    "hardlink-to-directory": (
        [Entry("d", type=DIR, mode=0o755), Entry("h", type=LNK, linkname="d")],
        "not a regular file earlier",
    ),
    "hardlink-through-symlink": (
        [Entry("l", type=SYM, linkname="/etc"), Entry("h", type=LNK, linkname="l/passwd")],
        "go through the symlink 'l'",
    ),
    "hardlink-absolute": ([Entry("h", type=LNK, linkname="/etc/passwd")], "is absolute"),
    "hardlink-dotdot": ([Entry("h", type=LNK, linkname="../x")], r"contains '\.\.'"),
    "block-device": ([Entry("sda", type=tarfile.BLKTYPE, devmajor=8)], "block device"),
    "fifo": ([Entry("p", type=tarfile.FIFOTYPE)], "FIFO"),
    "unknown-type": ([Entry("s", type=b"s")], "special entry"),
    "contiguous": ([Entry("c", type=tarfile.CONTTYPE)], "contiguous"),
    "setuid": ([Entry("su", b"x", mode=0o4755)], "setuid/setgid"),
    "setgid": ([Entry("sg", b"x", mode=0o2755)], "setuid/setgid"),
}


@pytest.mark.parametrize("kind", KINDS[:3], ids=lambda k: k.where)
def test_sparse_entries_are_refused_outside_crius_images(kind: nested.Kind) -> None:
    with pytest.raises(UnsafeArchiveError, match="GNU sparse"):
        check(kind, [Entry("s", type=tarfile.GNUTYPE_SPARSE)])


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.where)
@pytest.mark.parametrize("case", list(REFUSED))
def test_each_rule_refuses_in_every_nested_tar(kind: nested.Kind, case: str) -> None:
    entries, match = REFUSED[case]
    with pytest.raises(UnsafeArchiveError, match=match) as raised:
        check(kind, entries)
    assert kind.where in str(raised.value)


def test_pax_sparse_files_are_refused_too() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        f = tarfile.TarInfo("s")
        f.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": "4096", "GNU.sparse.name": "s"}
        tar.addfile(f)
    with pytest.raises(UnsafeArchiveError, match="GNU sparse"):
        check(SHM, buf.getvalue())


def test_entry_and_byte_bounds() -> None:
    data = tar_bytes([Entry(f"f{i}", b"x" * 10) for i in range(5)])
    with pytest.raises(UnsafeArchiveError, match="more than 4 entries"):
        nested.rebuild(io.BytesIO(data), SHM, None, checker=nested.TarChecker(SHM.where, max_entries=4))
    with pytest.raises(UnsafeArchiveError, match="more than 45 bytes"):
        nested.rebuild(io.BytesIO(data), SHM, None, checker=nested.TarChecker(SHM.where, max_bytes=45))


def test_a_gzip_bomb_in_a_tmpfs_image_is_stopped() -> None:
    big = tar_bytes([Entry("zeros", b"\x00" * (8 << 20))])
    bomb = gzip.compress(big, mtime=0)
    with pytest.raises(UnsafeArchiveError, match="expands to more than"):
        nested.rebuild(io.BytesIO(bomb), TMPFS, None, compressed_size=len(bomb) // 100)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (SHM, b"not a tar at all" * 64),
        (TMPFS, b"\x1f\x8b\x08\x00garbage"),
        (TMPFS, gzip.compress(tar_bytes([Entry("f", b"x" * 4096)]))[:-40]),
        (SHM, tar_bytes([Entry("f", b"x" * 4096)])[:1000]),
    ],
    ids=["not-a-tar", "bad-gzip", "truncated-gzip", "truncated-tar"],
)
def test_a_damaged_nested_tar_is_refused_by_name(kind: nested.Kind, data: bytes) -> None:
    with pytest.raises(IntegrityError, match=f"{kind.where} is truncated or corrupt"):
        nested.rebuild(io.BytesIO(data), kind, io.BytesIO(), compressed_size=len(data))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_tars_fail_only_with_archive_errors(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS))
    base = packed(
        kind, tar_bytes([Entry("d", type=DIR), Entry("d/f", b"abc" * 300), Entry("l", type=SYM, linkname="d")])
    )
    pos = data.draw(st.integers(0, len(base) - 1))
    damaged = base[:pos] + data.draw(st.binary(min_size=0, max_size=32)) + base[pos + data.draw(st.integers(0, 64)) :]
    with contextlib.suppress(ArchiveError):
        nested.rebuild(io.BytesIO(damaged), kind, io.BytesIO(), compressed_size=len(damaged))


# -- member names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["volumes/data.tar", "volumes/a.b-c_d.tar", "volumes/0.tar"])
def test_valid_volume_members(name: str) -> None:
    kind = nested.kind_of(name)
    assert kind is not None and not kind.gzip
    assert nested.volume_name(name) == name.removeprefix("volumes/").removesuffix(".tar")


@pytest.mark.parametrize(
    "name", ["volumes/-x.tar", "volumes/.tar", "volumes/a b.tar", "volumes/data", "volumes/x.tgz", "volumes/a/b.tar"]
)
def test_malformed_volume_members_are_refused(name: str) -> None:
    with pytest.raises(UnsafeArchiveError, match="volumes/"):
        nested.kind_of(name)


@pytest.mark.parametrize("name", ["checkpoint/tmpfs-dev-57.tar.gz.img", "checkpoint/tmpfs-12.tar.gz.img"])
def test_crius_tar_images_are_nested_tars(name: str) -> None:
    kind = nested.kind_of(name)
    assert kind is not None and kind.gzip and kind.devices == nested.RUNTIME_DEVICES


@pytest.mark.parametrize("name", ["checkpoint/pages-1.img", "config.dump", "checkpoint/tmpfs-dev-x.tar.gz.img"])
def test_other_members_are_not_nested_tars(name: str) -> None:
    assert nested.kind_of(name) is None


# -- through the archive reader ----------------------------------------------------------------


def _archive(**extra: bytes) -> bytes:
    config = real_config(namedVolumes=[{"volumeName": "data", "dest": "/data"}])
    return Forge(members={**MIN_MEMBERS, "config.dump": json.dumps(config).encode(), **extra}).bytes()


def test_verify_and_rewrite_rebuild_every_nested_tar() -> None:
    shm = tar_bytes([Entry("s", b"shm", mode=0o4755 & 0o777)])
    volume = tar_bytes([Entry("v", b"vol")])
    tmpfs = gzip.compress(tar_bytes([Entry(".", type=DIR, mode=0o1777), Entry("d/t", b"tm")]), mtime=0)
    data = _archive(
        **{"devshm-checkpoint.tar": shm, "volumes/data.tar": volume, "checkpoint/tmpfs-dev-60.tar.gz.img": tmpfs}
    )
    report = verify(io.BytesIO(data))
    assert report.volumes == {"data"}
    sink = io.BytesIO()
    rewrite(io.BytesIO(data), sink, expected=report)
    with tarfile.open(fileobj=io.BytesIO(sink.getvalue()), mode="r:") as out:
        got = {i.name: out.extractfile(i).read() for i in out if i.isreg()}  # type: ignore[union-attr]
    assert listing(got["devshm-checkpoint.tar"]) == [("s", tarfile.REGTYPE, 0o755, "", b"shm")]
    assert listing(got["volumes/data.tar"]) == [("v", tarfile.REGTYPE, 0o644, "", b"vol")]
    assert [n for n, *_ in listing(gzip.decompress(got["checkpoint/tmpfs-dev-60.tar.gz.img"]))] == [".", "d/t"]
    assert json.loads(got["spec.dump"])["process"]["args"] == real_spec()["process"]["args"]  # rebuilt


@pytest.mark.parametrize(
    "member",
    ["devshm-checkpoint.tar", "volumes/data.tar", "checkpoint/tmpfs-dev-60.tar.gz.img", "rootfs-diff.tar"],
)
def test_verify_refuses_an_escape_in_any_nested_tar(member: str) -> None:
    payload = tar_bytes([Entry("escape", type=SYM, linkname="/"), Entry("escape/etc/cron.d/x", b"x")])
    if member.endswith(".gz.img"):
        payload = gzip.compress(payload)
    with pytest.raises(UnsafeArchiveError, match=f"{member}.*go through the symlink 'escape'"):
        verify(io.BytesIO(_archive(**{member: payload})))


def _gnu_sparse_tar(size: int) -> bytes:
    """A tar as CRIU's ``tar --sparse`` writes a file with holes (GNU tar, real)."""
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        with (root / "hole").open("wb") as f:
            f.truncate(size)
            f.seek(size // 2)
            f.write(b"middle")
        proc = subprocess.run(
            ["tar", "--create", "--sparse", "--numeric-owner", "--directory", str(root), "."],
            capture_output=True,
            check=True,
        )
        return proc.stdout


def test_crius_sparse_files_are_written_out_in_full() -> None:
    data = _gnu_sparse_tar(1 << 20)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        assert any(i.type == tarfile.GNUTYPE_SPARSE for i in t), "GNU tar wrote no sparse entry"
    out = listing(check(TMPFS, data))
    hole = next(entry for entry in out if entry[0] == "hole")
    assert hole[1] == tarfile.REGTYPE and len(hole[4]) == 1 << 20
    assert hole[4][(1 << 19) : (1 << 19) + 6] == b"middle" and hole[4].count(0) == (1 << 20) - 6
    with pytest.raises(UnsafeArchiveError, match="GNU sparse"):
        check(SHM, data)


def test_sparse_files_are_written_out_only_up_to_a_limit() -> None:
    with pytest.raises(UnsafeArchiveError, match="sparse files of more than"):
        check(TMPFS, _gnu_sparse_tar(nested.SPARSE_LIMIT + 4096))

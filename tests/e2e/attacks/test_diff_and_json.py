"""The rootfs diff and deep JSON: entries Podman applies, members Podman and ferry parse.

Part of issue 10's acceptance suite (see tests/e2e/attacks/__init__.py): each test is an archive an
attacker with write access to the bucket could write, restored as root on the real restore path.
"""

from __future__ import annotations

import io
import json
import re
import tarfile

import pytest

from ferry.archive.compression import SUFFIX
from tests.archive_forge import (
    DIFF,
    MANIFEST,
    Entry,
    Member,
    Sealed,
    Unpacked,
    deep_json,
    pack,
    pack_tar,
    sha256,
)
from tests.attack_lab import Attempt, Lab
from tests.e2e.attacks.exploits import (
    CONFIG,
    DELETED,
    DIR,
    LNK,
    SPEC,
    SYM,
    clone,
)

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]


# ---------------------------------------------------------------------------------------------
# The rootfs diff, as Podman's untar applies it


def test_diff_directory_then_symlink_of_the_same_name(lab: Lab, atk: Attempt) -> None:
    """Go's untar sets directory times after the last entry, through whatever the path is then:
    here a symlink to a host directory."""
    u = clone(lab)
    d = Entry("data/d", type=DIR, mode=0o755)
    u.add_to_diff([d, Entry("data/d", type=SYM, linkname=str(atk.dir))])
    atk.refused(u, r"data/d")


def test_diff_hardlink_whose_parent_is_remade_as_a_symlink(lab: Lab, atk: Attempt) -> None:
    """``data/p/victim`` is a file of the diff, then ``data/p`` becomes a symlink to the target
    directory, then ``data/h`` hardlinks ``data/p/victim`` — now the host's file — and is
    chowned (vfs: same file system, no EXDEV)."""
    u = clone(lab)
    u.add_to_diff(
        [
            Entry("data/p", type=DIR, mode=0o755),
            Entry("data/p/victim", b"x"),
            Entry("data/p", type=SYM, linkname=str(atk.dir)),
        ]
    )
    link = Member.of(Entry("data/h", type=LNK, linkname="data/p/victim"))
    link.info.uid = link.info.gid = 4242
    u.set(DIFF, pack_tar([*u.diff(), link]))
    atk.refused(u, r"data/p|data/h|hardlink")


def _retyped_diff(u: Unpacked, name: str, data: bytes, typeflag: bytes) -> None:
    """Add a regular file to the diff, then make its header say ``typeflag`` (GNU sparse 'S'
    with a one-extent map covering the data, or contiguous '7')."""
    raw = bytearray(pack_tar([*u.diff(), Member.of(Entry(name, data))], tarfile.GNU_FORMAT))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw)), mode="r:") as tar:
        offset = tar.getmember(name).offset
    header = raw[offset : offset + 512]
    header[156:157] = typeflag
    if typeflag == tarfile.GNUTYPE_SPARSE:
        header[386:398] = b"%011o\0" % 0
        header[398:410] = b"%011o\0" % len(data)
        header[483:495] = b"%011o\0" % len(data)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    raw[offset : offset + 512] = header
    u.set(DIFF, bytes(raw))


@pytest.mark.parametrize("typeflag", [tarfile.GNUTYPE_SPARSE, tarfile.CONTTYPE], ids=["gnu-sparse", "contiguous"])
def test_diff_entry_type_podman_cannot_apply(lab: Lab, atk: Attempt, typeflag: bytes) -> None:
    """Podman fails on these late, after it has created the container: ferry must refuse them
    before Podman is asked to do anything."""
    u = clone(lab)
    _retyped_diff(u, "data/odd", b"0123456789" * 100, typeflag)
    atk.refused(u, r"data/odd|sparse|contiguous|type")


# ---------------------------------------------------------------------------------------------
# Bounded parsing: a clean refusal, never a RecursionError


DEPTH = 100_000


def test_deleted_files_nested_100k_deep(lab: Lab, atk: Attempt) -> None:
    u = clone(lab)
    u.set(DELETED, deep_json(DEPTH))
    atk.refused(u, r"deleted\.files")


@pytest.mark.parametrize("member", [CONFIG, SPEC])
def test_dump_nested_100k_deep(lab: Lab, atk: Attempt, member: str) -> None:
    u = clone(lab)
    text = (u.find(member).data or b"").rstrip()
    u.set(member, text[:-1] + b', "deep": ' + deep_json(DEPTH) + b"}")
    atk.refused(u, re.escape(member))


def test_manifest_and_sidecar_nested_100k_deep(lab: Lab, atk: Attempt) -> None:
    """The manifest inside and the store's sidecar, both with a 100k-deep field: consistent
    with each other and with the bytes, so only bounded parsing can refuse them cleanly."""
    u = clone(lab)
    raw = json.dumps(u.recomputed())[:-1].encode() + b', "deep": ' + deep_json(DEPTH) + b"}"
    data = pack([*u.members, Member.of(Entry(MANIFEST, raw))], u.compression)
    filename = "attack" + SUFFIX[u.compression]
    record = {"archive": filename, "size": len(data), "sha256": sha256(data), "compression": u.compression}
    sidecar = json.dumps({**record, "manifest": "@"}).encode().replace(b'"@"', raw)
    atk.refused(Sealed(filename, data, sidecar), r"manifest|sidecar|\.ferry\.json")

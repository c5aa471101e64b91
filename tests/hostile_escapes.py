"""Hostile cases that aim outside the container: paths in the archive, in the rootfs diff, in
deleted.files and in nested tars, links through the image's own symlinks, and archives without
a manifest. ``t`` is the sentinel directory, an absolute host path outside the container."""

from __future__ import annotations

import gzip
import json
import tarfile
from collections.abc import Callable

from ferry.errors import ArchiveError, UnsafeArchiveError
from tests.archive_forge import (
    Entry,
    Member,
    Unpacked,
    pack_tar,
)
from tests.hostile_seal import DELETED, UP, Hostile, Seal, seal

EntriesOf = Callable[[str], list[Entry]]


SYM, LNK, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE


OUTER: dict[str, tuple[EntriesOf, type[ArchiveError], str]] = {
    "outer-dotdot": (lambda t: [Entry(UP + t[1:] + "/victim", b"x")], UnsafeArchiveError, r"contains '\.\.'"),
    "outer-dotdot-inside-path": (
        lambda t: [Entry(f"checkpoint/{UP}{t[1:]}/victim", b"x")],
        UnsafeArchiveError,
        r"contains '\.\.'",
    ),
    "outer-absolute": (lambda t: [Entry(t + "/victim", b"x")], UnsafeArchiveError, "is absolute"),
    "outer-symlink-then-write": (
        lambda t: [Entry("checkpoint/escape", type=SYM, linkname=t), Entry("checkpoint/escape/victim", b"x")],
        UnsafeArchiveError,
        "is a symlink",
    ),
    "outer-hardlink-outside": (
        lambda t: [Entry("checkpoint/victim", type=LNK, linkname=t + "/victim")],
        UnsafeArchiveError,
        "is a hardlink",
    ),
    "outer-char-device": (
        lambda t: [Entry("checkpoint/mem", type=tarfile.CHRTYPE, devmajor=1)],
        UnsafeArchiveError,
        "character device",
    ),
    "outer-fifo": (lambda t: [Entry("checkpoint/fifo", type=tarfile.FIFOTYPE)], UnsafeArchiveError, "FIFO"),
}


DIFF_CASES: dict[str, tuple[EntriesOf, str]] = {
    "diff-dotdot": (lambda t: [Entry(UP + t[1:] + "/victim", b"x")], r"rootfs-diff.tar.*contains '\.\.'"),
    "diff-dotdot-inside-path": (lambda t: [Entry(f"data/{UP}{t[1:]}/victim", b"x")], r"contains '\.\.'"),
    "diff-absolute": (lambda t: [Entry(t + "/victim", b"x")], "rootfs-diff.tar.*is absolute"),
    "diff-symlink-absolute-then-write": (
        lambda t: [Entry("data/escape", type=SYM, linkname=t), Entry("data/escape/victim", b"x")],
        "go through the symlink 'data/escape'",
    ),
    "diff-symlink-relative-then-write": (
        lambda t: [Entry("data/up", type=SYM, linkname=UP + t[1:]), Entry("data/up/victim", b"x")],
        "go through the symlink 'data/up'",
    ),
    "diff-symlink-root-then-deep-write": (
        lambda t: [
            Entry("data/root", type=SYM, linkname="/"),
            Entry(f"data/root{t}", type=DIR, mode=0o755),
            Entry(f"data/root{t}/victim", b"x"),
        ],
        "go through the symlink 'data/root'",
    ),
    "diff-hardlink-absolute": (
        lambda t: [Entry("data/h", type=LNK, linkname=t + "/victim")],
        "hardlink 'data/h'.*is absolute",
    ),
    "diff-hardlink-dotdot": (
        lambda t: [Entry("data/h", type=LNK, linkname=UP + t[1:] + "/victim")],
        r"hardlink 'data/h'.*contains '\.\.'",
    ),
    "diff-hardlink-through-symlink": (
        lambda t: [Entry("data/l", type=SYM, linkname=t), Entry("data/h", type=LNK, linkname="data/l/victim")],
        "go through the symlink 'data/l'",
    ),
    "diff-hardlink-to-image-file": (
        lambda t: [Entry("data/h", type=LNK, linkname="etc/passwd")],
        "not a regular file earlier in the same tar",
    ),
    "diff-hardlink-to-file-relinked-as-symlink": (
        lambda t: [
            Entry("data/f", b"x"),
            Entry("data/f", type=SYM, linkname=t + "/victim"),
            Entry("data/h", type=LNK, linkname="data/f"),
        ],
        "'data/f' occurs twice",
    ),
    "diff-hardlink-parent-remade-as-symlink": (
        lambda t: [
            Entry("data/d/f", b"x"),
            Entry("data/d", type=SYM, linkname=t),
            Entry("data/h", type=LNK, linkname="data/d/victim"),
        ],
        "in place of a directory",
    ),
    "diff-directory-then-symlink-same-name": (
        lambda t: [Entry("data/d", type=DIR, mode=0o755), Entry("data/d", type=SYM, linkname=t)],
        "'data/d' occurs twice",
    ),
    "diff-gnu-sparse": (lambda t: [Entry("data/sparse", type=tarfile.GNUTYPE_SPARSE)], "GNU sparse"),
    "diff-contiguous": (lambda t: [Entry("data/cont", type=tarfile.CONTTYPE)], "contiguous"),
    "diff-char-device": (lambda t: [Entry("data/mem", type=tarfile.CHRTYPE, devmajor=1, mode=0o666)], "character"),
    "diff-block-device": (lambda t: [Entry("data/sda", type=tarfile.BLKTYPE, devmajor=8, mode=0o666)], "block"),
    "diff-fifo": (lambda t: [Entry("data/fifo", type=tarfile.FIFOTYPE)], "FIFO"),
    # tar has no socket type (GNU tar skips sockets): an unknown type byte is how one would come
    "diff-socket-or-unknown-type": (lambda t: [Entry("data/sock", type=b"s")], "special entry"),
    "diff-setuid": (lambda t: [Entry("data/su", b"#!/bin/sh\n", mode=0o4755)], "setuid/setgid"),
    "diff-setgid": (lambda t: [Entry("data/sg", b"#!/bin/sh\n", mode=0o2755)], "setuid/setgid"),
}


DELETED_CASES: dict[str, tuple[Callable[[str], bytes], str]] = {
    "deleted-dotdot": (lambda t: json.dumps([f"/{UP}{t[1:]}/victim"]).encode(), r"deleted.files.*contains '\.\.'"),
    "deleted-relative-dotdot": (lambda t: json.dumps([UP + t[1:]]).encode(), r"contains '\.\.'"),
    "deleted-root": (lambda t: b'["/"]', "container root"),
    "deleted-not-a-list": (lambda t: json.dumps({t + "/victim": True}).encode(), "JSON list"),
    "deleted-non-strings": (lambda t: json.dumps([1, None, [t + "/victim"]]).encode(), "not a string"),
    "deleted-not-json": (lambda t: b"\xff\xfe" + t.encode(), "not valid JSON"),
    "deleted-nul-byte": (lambda t: json.dumps([f"/data/x\x00/{UP}{t[1:]}"]).encode(), "NUL"),
}


def outer_case(name: str, base: Unpacked, target: str) -> Hostile:
    entries, error, match = OUTER[name]
    u = base.clone()
    u.members += [Member.of(e) for e in entries(target)]
    return seal(name, u, error, match)


def diff_case(name: str, base: Unpacked, target: str) -> Hostile:
    entries, match = DIFF_CASES[name]
    u = base.clone()
    u.add_to_diff(entries(target))
    return seal(name, u, UnsafeArchiveError, match)


DEVSHM = "devshm-checkpoint.tar"


VOLUME = "volumes/data.tar"


TMPFS = "checkpoint/tmpfs-dev-99.tar.gz.img"  # replaced by the base's own /dev-style image if it has one


def _escape(t: str) -> list[Entry]:
    return [Entry("escape", type=SYM, linkname=t), Entry("escape/victim", b"x")]


#: Tars nested in the archive that Podman or CRIU unpack as root: (member, entries, refusal).
NESTED_CASES: dict[str, tuple[str, EntriesOf, str]] = {
    "devshm-symlink-then-write": (DEVSHM, _escape, r"devshm-checkpoint\.tar.*through the symlink 'escape'"),
    "devshm-absolute-path": (DEVSHM, lambda t: [Entry(t + "/victim", b"x")], "devshm-checkpoint.tar.*is absolute"),
    "devshm-dotdot": (DEVSHM, lambda t: [Entry(UP + t[1:] + "/victim", b"x")], r"contains '\.\.'"),
    "volume-symlink-then-write": (VOLUME, _escape, r"volumes/data\.tar.*through the symlink 'escape'"),
    "volume-directory-then-symlink": (
        VOLUME,
        lambda t: [Entry("d", type=DIR, mode=0o755), Entry("d", type=SYM, linkname=t)],
        "'d' occurs twice",
    ),
    "volume-hardlink-outside": (VOLUME, lambda t: [Entry("h", type=LNK, linkname=t[1:] + "/victim")], "hardlink"),
    "volume-fifo": (VOLUME, lambda t: [Entry("fifo", type=tarfile.FIFOTYPE)], "FIFO"),
    "volume-bad-name": ("volumes/-x.tar", lambda t: [Entry("f", b"x")], "name Podman accepts"),
    "tmpfs-image-symlink-then-write": (TMPFS, _escape, r"tmpfs-dev-[0-9]+\.tar\.gz\.img.*through the symlink"),
    "tmpfs-image-device": (TMPFS, lambda t: [Entry("mem", type=tarfile.CHRTYPE, devmajor=1)], "character device"),
    "tmpfs-image-setuid": (TMPFS, lambda t: [Entry("su", b"#!/bin/sh\n", mode=0o4755)], "setuid/setgid"),
}


def nested_case(name: str, base: Unpacked, target: str) -> Hostile:
    member, entries, match = NESTED_CASES[name]
    u = base.clone()
    payload = pack_tar([Member.of(e) for e in entries(target)])
    if member == TMPFS:
        member = next((m.info.name for m in u.members if m.info.name.startswith("checkpoint/tmpfs-dev-")), TMPFS)
        payload = gzip.compress(payload, mtime=0)
    u.set(member, payload)
    return seal(name, u, UnsafeArchiveError, match)


def deleted_case(name: str, base: Unpacked, target: str) -> Hostile:
    content, match = DELETED_CASES[name]
    u = base.clone()
    u.set(DELETED, content(target))
    return seal(name, u, UnsafeArchiveError, match)


def deleted_through_diff_symlink(base: Unpacked, target: str) -> Hostile:
    """Podman applies the diff, then removes deleted.files: through the link the diff made."""
    u = base.clone()
    u.add_to_diff([Entry("data/escape", type=SYM, linkname=target)])
    u.set(DELETED, b'["/data/escape/victim"]')
    return seal("deleted-through-diff-symlink", u, UnsafeArchiveError, "deleted.files.*symlink 'data/escape'")


def unverified(name: str, edit: Callable[[Unpacked, str], None], match: str) -> Callable[[Unpacked, str], Hostile]:
    """With --allow-unverified (no manifest needed), every path is checked all the same."""

    def build(base: Unpacked, target: str) -> Hostile:
        u = base.clone()
        edit(u, target)
        return seal(name, u, UnsafeArchiveError, match, Seal(allow_unverified=True))

    return build


def unverified_escape(u: Unpacked, t: str) -> None:
    u.add_to_diff([Entry("data/escape", type=SYM, linkname=t), Entry("data/escape/victim", b"x")])


def unverified_deleted(u: Unpacked, t: str) -> None:
    u.set(DELETED, json.dumps([f"/{UP}{t[1:]}/victim"]).encode())


def image_link(name: str, edit: Callable[[Unpacked, str], None]) -> Callable[[Unpacked, str], Hostile]:
    """Needs a base whose image has /data/link -> /: the archive alone looks harmless."""

    def build(base: Unpacked, target: str) -> Hostile:
        if not base.image_link:
            raise ValueError(f"{name} needs a base archive of an image with /data/link -> /")
        u = base.clone()
        edit(u, target)
        return seal(name, u, UnsafeArchiveError, "symlink in the container's image")

    return build


def image_link_diff(u: Unpacked, t: str) -> None:
    u.add_to_diff([Entry(f"data/link{t}/victim", b"x")])


def image_link_deleted(u: Unpacked, t: str) -> None:
    u.set(DELETED, json.dumps([f"/data/link{t}/victim"]).encode())

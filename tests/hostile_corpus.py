"""A corpus of hostile checkpoint archives, generated from a valid one (never checked in).

Each case takes a real archive (a ferry snapshot, or a forged one for unit tests), changes one
thing, re-packs it and recomputes the manifest and the sidecar, so the refusal is the policy's
doing; only the cases about checksums leave a hash stale on purpose. Paths that try to escape
aim at a sentinel tree outside the container root (``target``), whose every byte the tests
compare before and after.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry.archive.compression import SUFFIX, Compression
from ferry.errors import ArchiveError, IntegrityError, UnsafeArchiveError, UnsupportedArchiveError
from tests import criu_edit
from tests.archive_forge import (  # noqa: F401  (re-exported: the corpus's tests use them as hc.*)
    DIFF,
    MANIFEST,
    Entry,
    Forge,
    Member,
    Sealed,
    Unpacked,
    make_sentinel,
    manifest_member,
    pack,
    pack_tar,
    sha256,
    sidecar_json,
    tree_state,
)
from tests.helpers import signed_sidecar

DELETED = "deleted.files"
INVENTORY = "checkpoint/inventory.img"
UP = "../" * 24  # climbs out of any container root: the rest is resolved from the host's /
BOMB_BYTES = 256 << 20


@dataclass(frozen=True)
class Hostile:
    """One hostile archive, the sidecar to put next to it, and how ferry must refuse it."""

    name: str
    data: bytes
    sidecar: bytes | None
    error: type[ArchiveError]
    match: str  # regex the refusal's message must match
    compression: Compression = "zstd"
    allow_unverified: bool = False
    needs_image: bool = False  # below a symlink of the image: only the restore can tell

    @property
    def filename(self) -> str:
        return self.name + SUFFIX[self.compression]


@dataclass
class Seal:
    """How to finish a case: which manifest goes inside, which sidecar outside."""

    manifest: dict[str, Any] | bytes | None = None  # default: recomputed over the members
    sidecar_manifest: dict[str, Any] | None = None  # default: the manifest inside
    sidecar: bool = True
    after: list[Member] = field(default_factory=list)  # members after the manifest
    mangle: Callable[[bytes], bytes] | None = None  # damage to the compressed bytes
    stale_sidecar: bool = False  # sidecar of the bytes before mangle
    allow_unverified: bool = False


def seal(name: str, u: Unpacked, error: type[ArchiveError], match: str, how: Seal | None = None) -> Hostile:
    how = how or Seal()
    inner = u.recomputed() if how.manifest is None else how.manifest
    tail = [] if how.allow_unverified else [manifest_member(inner)]
    data = pack([*u.members, *tail, *how.after], u.compression)
    damaged = how.mangle(data) if how.mangle else data
    outer = how.sidecar_manifest or (inner if isinstance(inner, dict) else u.manifest)
    filename = name + SUFFIX[u.compression]
    sidecar = None
    if how.sidecar and not how.allow_unverified:
        sidecar = sidecar_json(filename, data if how.stale_sidecar else damaged, u.compression, outer)
    return Hostile(
        name,
        damaged,
        sidecar,
        error,
        match,
        u.compression,
        allow_unverified=how.allow_unverified,
        needs_image=u.image_link,
    )


# ---------------------------------------------------------------------------------------------
# The cases. ``t`` is the sentinel directory, an absolute host path outside the container.

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


def restored_cores(u: Unpacked, made: bytes) -> list[str]:
    """The core images CRIU would restore (the tasks and threads pstree.img names); a base without
    any gets ``made`` as core-1.img, named by a new pstree.img."""
    from ferry.archive import criu_images as ci

    tree = next((m for m in u.members if m.info.name == "checkpoint/pstree.img"), None)
    if tree is None:
        u.set("checkpoint/pstree.img", criu_edit.pstree_image([1]))
        u.set("checkpoint/core-1.img", made)
        return ["checkpoint/core-1.img"]
    return [f"checkpoint/core-{tid}.img" for tid in ci.restored_threads("pstree.img", tree.data or b"")]


def core_escalated(base: Unpacked, target: str) -> Hostile:
    """A core image re-encoded with every capability and seccomp off (made if the base has none)."""
    u = base.clone()
    name = restored_cores(u, criu_edit.core_image(caps=criu_edit.FULL_CAPS, seccomp_mode=0))[0]
    u.set(name, criu_edit.escalate(u.find(name).data or b""))
    return seal("core-full-caps-seccomp-off", u, UnsafeArchiveError, "capability set|seccomp mode")


def core_root_for_non_root_spec(base: Unpacked, target: str) -> Hostile:
    """The spec runs the process as uid 1000; the core image makes it root again."""
    u = base.clone()
    spec = json.loads(u.find("spec.dump").data or b"{}")
    spec.setdefault("process", {})["user"] = {"uid": 1000, "gid": 1000}
    u.set("spec.dump", json.dumps(spec).encode())
    restored_cores(u, criu_edit.core_image(uid=0))
    return seal("core-root-for-non-root-spec", u, UnsafeArchiveError, r"uid/euid/suid/fsuid 0 \(root\)")


def core_unlimited_rlimits(base: Unpacked, target: str) -> Hostile:
    """Every resource limit of the task raised to unlimited, above the spec's hard NOFILE."""
    u = base.clone()
    spec = json.loads(u.find("spec.dump").data or b"{}")
    process = spec.setdefault("process", {})
    if not process.get("rlimits"):
        process["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        u.set("spec.dump", json.dumps(spec).encode())
    name = restored_cores(u, criu_edit.core_image())[0]
    u.set(name, criu_edit.unlimited_rlimits(u.find(name).data or b""))
    return seal("core-unlimited-rlimits", u, UnsafeArchiveError, r"hard RLIMIT_[A-Z]+ of 18446744073709551615")


def seccomp_allow_all(base: Unpacked, target: str) -> Hostile:
    """seccomp.img replaced by one filter that allows every call; the threads keep mode 2."""
    from ferry.archive import criu_images as ci
    from ferry.archive import protowire as pw

    u = base.clone()
    spec = json.loads(u.find("spec.dump").data or b"{}")
    if not (spec.get("linux") or {}).get("seccomp"):
        spec.setdefault("linux", {})["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO"}
        u.set("spec.dump", json.dumps(spec).encode())
    restored_cores(u, criu_edit.core_image(seccomp_mode=2))
    allow = pw.encode_fields({1: [(pw.LENGTH, b"\x06\x00\x00\x00\x00\x00\xff\x7f")]})
    magic = ci.IMG_COMMON_MAGIC.to_bytes(4, "little") + ci.SECCOMP_MAGIC.to_bytes(4, "little")
    u.set("checkpoint/seccomp.img", criu_edit.image(magic, [pw.encode_fields({1: [(pw.LENGTH, allow)]})]))
    # every thread points at filter 0, the only one left
    for m in u.members:
        if re.fullmatch(r"checkpoint/core-[0-9]+\.img", m.info.name) and m.data:
            u.set(m.info.name, criu_edit.point_at_filter(m.data, 0))
    return seal("seccomp-allow-all-filter", u, UnsafeArchiveError, "may allow kexec_load|seccomp filter may allow")


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


def duplicate_member(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    config = json.loads(u.find("config.dump").data or b"{}")
    u.members.append(Member.of(Entry("config.dump", json.dumps({**config, "name": "evil"}).encode())))
    return seal("duplicate-member", u, UnsafeArchiveError, "'config.dump' twice")


def member_after_manifest(base: Unpacked, target: str) -> Hostile:
    late = Member.of(Entry("checkpoint/late.img", b"not covered by the manifest"))
    return seal("member-after-manifest", base.clone(), UnsafeArchiveError, "after the manifest", Seal(after=[late]))


def member_larger_than_manifest(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    manifest = u.recomputed()
    u.set("config.dump", (u.find("config.dump").data or b"") + b" " * 4096)
    return seal("member-larger-than-manifest", u, IntegrityError, "config.dump.*the manifest says", Seal(manifest))


def member_hash_mismatch(base: Unpacked, target: str) -> Hostile:
    """One flipped bit in a member's bytes, the manifest as it was before the flip."""
    u = base.clone()
    manifest = u.recomputed()
    member = max((m for m in u.members if m.data), key=lambda m: len(m.data or b""))
    data = bytearray(member.data or b"")
    data[len(data) // 2] ^= 0x10
    member.data = bytes(data)
    return seal(
        "bitflip-in-member-data", u, IntegrityError, "does not match its sha256 in the manifest", Seal(manifest)
    )


def member_not_in_manifest(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    manifest = u.recomputed()
    u.set("checkpoint/extra.img", b"smuggled")
    return seal("member-not-in-manifest", u, IntegrityError, "not listed in the manifest", Seal(manifest))


def manifest_lists_absent_member(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    ghost = {"name": "checkpoint/ghost.img", "size": 1, "sha256": "0" * 64}
    manifest = u.recomputed(members=[*u.digests(), ghost])
    return seal("manifest-lists-absent-member", u, IntegrityError, "lacks: checkpoint/ghost.img", Seal(manifest))


def manifest_missing(base: Unpacked, target: str) -> Hostile:
    """No manifest and no sidecar: what a Podman export looks like."""
    return _without_manifest("manifest-missing", base, None, "no ferry manifest")


def manifest_missing_with_sidecar(base: Unpacked, target: str) -> Hostile:
    return _without_manifest("manifest-missing-sidecar-present", base, base.manifest, "manifest is missing")


def _without_manifest(name: str, base: Unpacked, sidecar_manifest: dict[str, Any] | None, match: str) -> Hostile:
    data = pack(base.members, base.compression)
    filename = name + SUFFIX[base.compression]
    sidecar = sidecar_json(filename, data, base.compression, sidecar_manifest) if sidecar_manifest else None
    return Hostile(name, data, sidecar, UnsupportedArchiveError, match, base.compression)


def manifest_malformed(base: Unpacked, target: str) -> Hostile:
    how = Seal(manifest=b'{"format": "ferry-checkpoint", "version": 1, "members": [', sidecar_manifest=base.manifest)
    return seal("manifest-not-json", base.clone(), UnsupportedArchiveError, "malformed", how)


def manifest_bad_members(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    bad = json.dumps(u.recomputed(members="all of them")).encode()
    return seal("manifest-members-not-a-list", u, UnsupportedArchiveError, "malformed", Seal(bad, base.manifest))


def manifest_newer_version(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    return seal("manifest-newer-version", u, UnsupportedArchiveError, "version 2", Seal(u.recomputed(version=2)))


def manifest_newer_version_inside_only(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    how = Seal(u.recomputed(version=2), sidecar_manifest=u.recomputed())
    return seal("manifest-newer-version-inside", u, UnsupportedArchiveError, "version 2", how)


def sidecar_sha_mismatch(base: Unpacked, target: str) -> Hostile:
    case = seal("sidecar-sha256-mismatch", base.clone(), IntegrityError, "sha256.*does not match the store's record")
    record = json.loads(case.sidecar or b"{}")
    record["sha256"] = "0" * 64
    return _with_sidecar(case, json.dumps(record).encode())


def _with_sidecar(case: Hostile, sidecar: bytes) -> Hostile:
    return Hostile(case.name, case.data, sidecar, case.error, case.match, case.compression)


def missing_inventory(base: Unpacked, target: str) -> Hostile:
    u = base.clone()
    u.remove(INVENTORY)
    return seal("missing-inventory-img", u, UnsupportedArchiveError, "lacks checkpoint/inventory.img")


def bomb(base: Unpacked, target: str) -> Hostile:
    """A few hundred KiB that expand to BOMB_BYTES; the sidecar's manifest declares the real size."""
    u = base.clone()
    manifest = u.recomputed()
    bomb_info = Member.of(Entry("checkpoint/pages-9.img", b"")).info
    u.members.insert(u.members.index(u.find(INVENTORY)) + 1, Member(bomb_info, None, zeros=BOMB_BYTES))
    return seal("decompression-bomb", u, UnsafeArchiveError, "decompression bomb", Seal(manifest))


def truncated(compression: Compression) -> Callable[[Unpacked, str], Hostile]:
    def build(base: Unpacked, target: str) -> Hostile:
        how = Seal(mangle=lambda data: data[: len(data) * 2 // 3])
        return seal(f"truncated-{compression}", base.clone(compression), IntegrityError, "truncated or corrupt", how)

    return build


def bitflip_stale_sidecar(base: Unpacked, target: str) -> Hostile:
    how = Seal(mangle=_flip_middle, stale_sidecar=True)
    return seal("bitflip-zstd-sidecar-stale", base.clone("zstd"), IntegrityError, "sha256", how)


def bitflip_gzip(base: Unpacked, target: str) -> Hostile:
    """The sidecar matches the damaged bytes: gzip's CRC, the tar or the manifest must notice."""
    how = Seal(mangle=_flip_middle)
    return seal("bitflip-gzip-stream", base.clone("gzip"), ArchiveError, "corrupt|sha256|manifest|lacks", how)


def bitflip_tar_header(base: Unpacked, target: str) -> Hostile:
    """A flipped bit in a header of an uncompressed archive: the tar looks as if it ended there."""
    how = Seal(mangle=_flip_header_of("config.dump"))
    return seal("bitflip-tar-header", base.clone("none"), ArchiveError, "lacks|missing|corrupt", how)


def _flip_middle(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x40
    return bytes(out)


def _flip_header_of(name: str) -> Callable[[bytes], bytes]:
    def flip(data: bytes) -> bytes:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            offset = tar.getmember(name).offset
        out = bytearray(data)
        out[offset + 100] ^= 0x01  # the mode field of the header block
        return bytes(out)

    return flip


def unverified(name: str, edit: Callable[[Unpacked, str], None], match: str) -> Callable[[Unpacked, str], Hostile]:
    """With --allow-unverified (no manifest needed), every path is checked all the same."""

    def build(base: Unpacked, target: str) -> Hostile:
        u = base.clone()
        edit(u, target)
        return seal(name, u, UnsafeArchiveError, match, Seal(allow_unverified=True))

    return build


def _unverified_escape(u: Unpacked, t: str) -> None:
    u.add_to_diff([Entry("data/escape", type=SYM, linkname=t), Entry("data/escape/victim", b"x")])


def _unverified_deleted(u: Unpacked, t: str) -> None:
    u.set(DELETED, json.dumps([f"/{UP}{t[1:]}/victim"]).encode())


def _image_link_diff(u: Unpacked, t: str) -> None:
    u.add_to_diff([Entry(f"data/link{t}/victim", b"x")])


def _image_link_deleted(u: Unpacked, t: str) -> None:
    u.set(DELETED, json.dumps([f"/data/link{t}/victim"]).encode())


def image_link(name: str, edit: Callable[[Unpacked, str], None]) -> Callable[[Unpacked, str], Hostile]:
    """Needs a base whose image has /data/link -> /: the archive alone looks harmless."""

    def build(base: Unpacked, target: str) -> Hostile:
        if not base.image_link:
            raise ValueError(f"{name} needs a base archive of an image with /data/link -> /")
        u = base.clone()
        edit(u, target)
        return seal(name, u, UnsafeArchiveError, "symlink in the container's image")

    return build


Builder = Callable[[Unpacked, str], Hostile]


def _named(table: dict[str, Any], build: Callable[[str, Unpacked, str], Hostile]) -> dict[str, Builder]:
    return {name: (lambda b, t, n=name: build(n, b, t)) for name in table}


SPECIAL: dict[str, Builder] = {
    "deleted-through-diff-symlink": deleted_through_diff_symlink,
    "duplicate-member": duplicate_member,
    "member-after-manifest": member_after_manifest,
    "member-larger-than-manifest": member_larger_than_manifest,
    "bitflip-in-member-data": member_hash_mismatch,
    "member-not-in-manifest": member_not_in_manifest,
    "manifest-lists-absent-member": manifest_lists_absent_member,
    "manifest-missing": manifest_missing,
    "manifest-missing-sidecar-present": manifest_missing_with_sidecar,
    "manifest-not-json": manifest_malformed,
    "manifest-members-not-a-list": manifest_bad_members,
    "manifest-newer-version": manifest_newer_version,
    "manifest-newer-version-inside": manifest_newer_version_inside_only,
    "sidecar-sha256-mismatch": sidecar_sha_mismatch,
    "missing-inventory-img": missing_inventory,
    "decompression-bomb": bomb,
    "truncated-zstd": truncated("zstd"),
    "truncated-gzip": truncated("gzip"),
    "bitflip-zstd-sidecar-stale": bitflip_stale_sidecar,
    "bitflip-gzip-stream": bitflip_gzip,
    "bitflip-tar-header": bitflip_tar_header,
    "unverified-diff-symlink-then-write": unverified(
        "unverified-diff-symlink-then-write", _unverified_escape, "go through the symlink"
    ),
    "unverified-deleted-dotdot": unverified("unverified-deleted-dotdot", _unverified_deleted, r"contains '\.\.'"),
}

#: Every case an ordinary base archive yields (names known before any archive exists).
CASES: dict[str, Builder] = {
    **_named(OUTER, outer_case),
    **_named(DIFF_CASES, diff_case),
    **_named(DELETED_CASES, deleted_case),
    **_named(NESTED_CASES, nested_case),
    "core-full-caps-seccomp-off": core_escalated,
    "core-root-for-non-root-spec": core_root_for_non_root_spec,
    "seccomp-allow-all-filter": seccomp_allow_all,
    "core-unlimited-rlimits": core_unlimited_rlimits,
    **SPECIAL,
}

#: Cases that need a base archive of an image holding /data/link -> /.
IMAGE_LINK_CASES: dict[str, Builder] = {
    "image-symlink-diff-write": image_link("image-symlink-diff-write", _image_link_diff),
    "image-symlink-deleted-entry": image_link("image-symlink-deleted-entry", _image_link_deleted),
}


def build(name: str, base: Unpacked, target: str) -> Hostile:
    builder = CASES.get(name) or IMAGE_LINK_CASES[name]
    case = builder(base, target)
    if case.name != name:
        raise AssertionError(f"case {name} built as {case.name}")
    return case


def forged_base(*, image_link: bool = False) -> Unpacked:
    """A small valid archive with a diff and deleted.files, for tests without podman."""
    diff = [Entry("data", type=DIR, mode=0o755), Entry("data/log", b"1\n2\n")]
    return Unpacked.parse(Forge(diff=diff, deleted=b'["/etc/deleteme"]').bytes(), image_link=image_link)


def _signed_if_readable(sidecar: bytes) -> bytes:
    try:
        return signed_sidecar(sidecar)
    except (ArchiveError, ValueError, TypeError):  # a malformed sidecar is refused before any signature is looked at
        return sidecar


def put_in_store(case: Hostile, store: Path, container: str = "app", *, signed: bool = True) -> str:
    """Place the archive (and its sidecar, if any, signed unless told not) in a file:// store; return its URL."""
    folder = store / container
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / case.filename
    path.write_bytes(case.data)
    if case.sidecar is not None:
        # Signed with the trusted key, so the refusal is the case's own and not the signature's.
        sidecar = _signed_if_readable(case.sidecar) if signed else case.sidecar
        (folder / (case.filename + ".ferry.json")).write_bytes(sidecar)
    return f"file://{path}"

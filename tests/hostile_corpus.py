"""A corpus of hostile checkpoint archives, generated from a valid one (never checked in).

Each case takes a real archive (a ferry snapshot, or a forged one for unit tests), changes one
thing, re-packs it and recomputes the manifest and the sidecar, so the refusal is the policy's
doing; only the cases about checksums leave a hash stale on purpose. Paths that try to escape
aim at a sentinel tree outside the container root (``target``), whose every byte the tests
compare before and after.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable
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
from tests.hostile_escapes import (
    DELETED_CASES,
    DIFF_CASES,
    NESTED_CASES,
    OUTER,
    deleted_case,
    deleted_through_diff_symlink,
    diff_case,
    image_link,
    image_link_deleted,
    image_link_diff,
    nested_case,
    outer_case,
    unverified,
    unverified_deleted,
    unverified_escape,
)
from tests.hostile_seal import (  # noqa: F401  (re-exported: the corpus's tests use them as hc.*)
    BOMB_BYTES,
    DELETED,
    INVENTORY,
    UP,
    Hostile,
    Seal,
    forged_base,
    put_in_store,
    seal,
)


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
        "unverified-diff-symlink-then-write", unverified_escape, "go through the symlink"
    ),
    "unverified-deleted-dotdot": unverified("unverified-deleted-dotdot", unverified_deleted, r"contains '\.\.'"),
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
    "image-symlink-diff-write": image_link("image-symlink-diff-write", image_link_diff),
    "image-symlink-deleted-entry": image_link("image-symlink-deleted-entry", image_link_deleted),
}


def build(name: str, base: Unpacked, target: str) -> Hostile:
    builder = CASES.get(name) or IMAGE_LINK_CASES[name]
    case = builder(base, target)
    if case.name != name:
        raise AssertionError(f"case {name} built as {case.name}")
    return case

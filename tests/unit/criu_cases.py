"""Shared by the CRIU core-image tests: a spec, core and seccomp images, and edits of them."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.archive import criu_images as ci
from ferry.archive import protowire as pw
from ferry.archive.criu_grants import Grants
from ferry.archive.criu_images import check_core_images
from ferry.errors import UnsafeArchiveError
from tests import criu_edit
from tests.criu_edit import core_image

CHOWN, NET_BIND = 1 << 0, 1 << 10
SPEC_CAPS = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
MAGIC_SECCOMP = ci.IMG_COMMON_MAGIC.to_bytes(4, "little") + ci.SECCOMP_MAGIC.to_bytes(4, "little")


def spec(
    *, caps: list[str] = SPEC_CAPS, uid: int = 0, gid: int = 0, seccomp: bool = True, nnp: bool = False
) -> dict[str, Any]:
    sets = dict.fromkeys(("bounding", "effective", "permitted"), caps)
    out: dict[str, Any] = {
        "process": {"user": {"uid": uid, "gid": gid}, "capabilities": sets, "noNewPrivileges": nnp},
        "linux": {},
    }
    if seccomp:
        out["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO"}
    return out


def seccomp_img(*chain: int | None, insns: int = 4) -> bytes:
    """seccomp.img with one filter per item; the item is that filter's ``prev`` (None: no prev)."""
    filters = []
    for prev in chain:
        f: dict[int, list[tuple[int, pw.Value]]] = {1: [(pw.LENGTH, b"\x06\x00\x00\x00\x00\x00\xff\x7f" * insns)]}
        if prev is not None:
            f[2] = [(pw.VARINT, prev)]
        filters.append((pw.LENGTH, pw.encode_fields(f)))
    return criu_edit.image(MAGIC_SECCOMP, [pw.encode_fields({1: filters})])


def core(**kw: Any) -> bytes:
    kw.setdefault("caps", [CHOWN | NET_BIND, 0])
    kw.setdefault("seccomp_mode", 2)
    return core_image(**kw)


def images(*cores: bytes, seccomp: bytes | None = None) -> dict[str, bytes]:
    """Core images 1..n, each a task of its own in pstree.img."""
    out = {f"checkpoint/core-{i + 1}.img": c for i, c in enumerate(cores)}
    out["checkpoint/pstree.img"] = criu_edit.pstree_image(*([i + 1] for i in range(len(cores))))
    if seccomp is not None:
        out["checkpoint/seccomp.img"] = seccomp
    return out


def edit_core(data: bytes, *, tc: dict[int, Any] | None = None, thread: dict[int, Any] | None = None) -> bytes:
    """Set (value) or drop (None) fields of the task core or the thread core of an image."""
    magic, (entry,) = criu_edit.entries(data)
    c = pw.fields(entry)
    for number, edits in ((ci.CORE_TC, tc), (ci.CORE_THREAD_CORE, thread)):
        if not edits:
            continue
        inner = pw.fields(pw.message(c, number) or b"")
        for field, value in edits.items():
            if value is None:
                inner.pop(field, None)
            else:
                inner[field] = [(pw.LENGTH if isinstance(value, bytes) else pw.VARINT, value)]
        c[number] = [(pw.LENGTH, pw.encode_fields(inner))]
    return criu_edit.image(magic, [pw.encode_fields(c)])


def refused(imgs: dict[str, bytes], grants: Grants, match: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=match):
        check_core_images(imgs, grants)


GRANTS = Grants.from_spec(spec())

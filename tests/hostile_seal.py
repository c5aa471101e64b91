"""How a hostile case is finished and stored: the manifest inside, the sidecar outside (signed
when this host can sign), and the refusal it must meet."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry.archive.compression import SUFFIX, Compression
from ferry.errors import ArchiveError
from tests.archive_forge import (
    Entry,
    Forge,
    Member,
    Unpacked,
    manifest_member,
    pack,
    sidecar_json,
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


def forged_base(*, image_link: bool = False) -> Unpacked:
    """A small valid archive with a diff and deleted.files, for tests without podman."""
    diff = [Entry("data", type=tarfile.DIRTYPE, mode=0o755), Entry("data/log", b"1\n2\n")]
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

"""Does a walked archive hold everything, and exactly what, its manifest and sidecar say?

Run after the reader has streamed every member (:mod:`ferry.archive.reader`): the required
members are there, the stored bytes match the store's sidecar, the internal manifest matches the
sidecar's, and every member matches its manifest entry in size and sha256 — no more, no fewer.
"""

from __future__ import annotations

from ferry.archive import members as m
from ferry.archive.manifest import Manifest, MemberDigest, Sidecar
from ferry.errors import IntegrityError, UnsupportedArchiveError


def check_complete(
    members: dict[str, MemberDigest],
    manifest: Manifest | None,
    archive_size: int,
    archive_sha256: str,
    sidecar: Sidecar | None,
    require_manifest: bool,
) -> None:
    """Refuse an archive whose members, manifest and stored bytes do not all agree."""
    # Damaged bytes first: a corrupt tar header ends the tar stream early (tarfile reads an
    # invalid header after the first as the end), so members seem missing when the archive is
    # in fact corrupt, and the operator must be told it is damaged.
    if sidecar is not None and (archive_size != sidecar.size or archive_sha256 != sidecar.sha256):
        raise IntegrityError(
            f"The archive's sha256 {archive_sha256[:16]}... ({archive_size} "
            f"bytes) does not match the store's record {sidecar.sha256[:16]}... "
            f"({sidecar.size} bytes): it was corrupted or replaced."
        )
    missing = [name for name in m.REQUIRED if name not in members]
    if missing:
        raise UnsupportedArchiveError(
            f"The archive lacks {', '.join(missing)}: it is not a complete container checkpoint "
            "(Podman refuses to restore without them)."
        )
    if sidecar is not None:
        if manifest is None:
            raise UnsupportedArchiveError("The archive's internal manifest is missing.")
        if manifest != sidecar.manifest:
            raise IntegrityError("The archive's internal manifest differs from the store's record.")
    if manifest is None:
        if require_manifest:
            raise UnsupportedArchiveError(
                "The archive has no ferry manifest, so its integrity cannot be checked. If it is "
                "a Podman export you trust, restore it with --allow-unverified."
            )
        return
    listed = {d.name: d for d in manifest.members}
    for name, seen in members.items():
        want = listed.get(name)
        if want is None:
            raise IntegrityError(f"Member {name!r} is not listed in the manifest.")
        if want.size != seen.size:
            raise IntegrityError(f"Member {name!r} is {seen.size} bytes; the manifest says {want.size}.")
        if want.sha256 != seen.sha256:
            raise IntegrityError(f"Member {name!r} does not match its sha256 in the manifest.")
    absent = sorted(set(listed) - set(members))
    if absent:
        raise IntegrityError(f"The manifest lists members the archive lacks: {', '.join(absent)}.")

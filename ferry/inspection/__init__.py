"""``ferry inspect``'s core: what a checkpoint archive holds, and whether this host could restore it.

A checkpointctl-style view. The archive is untrusted and may be large and remote, so it is read
exactly once, as a stream (:mod:`ferry.inspection.tee`): the bytes pass through
:func:`ferry.archive.reader.verify` (the same check a restore makes) while the scanner
(:mod:`ferry.inspection.scanner`) reads a copy and keeps only what it shows. The few CRIU images
it keeps are decoded by Debian's ``crit`` (:mod:`ferry.inspection.criu`), and
:mod:`ferry.inspection.compat` checks the archive against this host.

A verification failure does not stop the inspection: the point of inspecting a suspicious
archive is to see what it is. Whatever could not be read is listed under ``notes``.
Opening the archive in a store is the caller's part (``ferry/cli/inspect.py``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ferry import keys, restore_policy
from ferry.archive.envelope import Opened, open_plain
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import expansion_limit, verify
from ferry.archive.rebuild_context import RebuildContext
from ferry.archive.signing import check as check_signature
from ferry.archive.streams import Readable
from ferry.errors import ArchiveError, UsageError
from ferry.inspection.compat import compatibility, cpu_compat
from ferry.inspection.criu import dump_stats, processes
from ferry.inspection.scanner import Scan
from ferry.inspection.tee import read_twice
from ferry.runtime import Podman


def inspect_stream(
    url: str,
    source: Readable,
    sidecar: Sidecar | None,
    *,
    sidecar_problem: str = "",
    runtime: Podman | None = None,
    allow_unsigned: bool = False,
    key: bytes | None = None,
) -> dict[str, Any]:
    """Describe the archive read from ``source`` (found at ``url``, with the store's ``sidecar``)
    and check it against this host; JSON-serialisable.

    An encrypted archive is decrypted with ``key`` (:func:`ferry.keys.encryption_key`); without
    it, a :class:`UsageError`. ``sidecar_problem`` says why the store's sidecar could not be read:
    the archive then shows as not verified, as does one without a trusted signature unless
    ``allow_unsigned``."""
    runtime = runtime if runtime is not None else Podman()
    opened = _open(source, sidecar, key)
    with tempfile.TemporaryDirectory(prefix="ferry-inspect-") as tmp:
        scan = Scan(Path(tmp), expansion_limit(opened.sidecar))
        plain = _EndsOnError(opened.plain)
        verification, scan.archive_bytes = read_twice(plain, scan.run, lambda s: _verify(s, opened.sidecar))
        if verification[0]:
            verification = _stored(opened, verification)
        if plain.error is not None and scan.members == 0:
            raise plain.error  # nothing decrypted (a wrong key): that is the error, not "no archive"
        scan.finish()
        checked = _signed(verification, sidecar, allow_unsigned)
        verification = (False, sidecar_problem) if sidecar_problem else checked
        tree = processes(scan)
        stats = dump_stats(scan)
        cpu = cpu_compat(scan)
    data = _describe(url, scan, verification, tree, stats)
    data["compatibility"] = compatibility(data, cpu, runtime)
    data["notes"] = scan.notes
    return data


def _open(source: Readable, sidecar: Sidecar | None, key: bytes | None) -> Opened:
    try:
        return open_plain(source, sidecar, key)
    except UsageError as exc:
        raise UsageError(
            "The archive is encrypted: set FERRY_ENCRYPTION_KEY (or FERRY_ENCRYPTION_KEY_BLOCK) to the key it "
            "was written with, and inspect it again."
        ) from exc


class _EndsOnError:
    """The plaintext, ending at the first chunk that does not decrypt: the check reports that
    error, and the scanner's copy ends there rather than failing the whole inspection."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self.error: ArchiveError | None = None

    def read(self, size: int = -1, /) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self._source.read(size)
        except ArchiveError as exc:
            self.error = exc
            raise


def _stored(opened: Opened, verification: tuple[bool, str]) -> tuple[bool, str]:
    """An encrypted archive: its stored bytes (the ciphertext) against the store's record."""
    try:
        opened.check_stored()
    except ArchiveError as exc:
        return False, str(exc)
    return verification


def _verify(source: Readable, sidecar: Sidecar | None) -> tuple[bool, str]:
    try:
        verify(source, sidecar=sidecar, ctx=RebuildContext(policy=restore_policy.load()))
    except ArchiveError as exc:
        return False, str(exc)
    if sidecar is None:
        return False, (
            "there is no sidecar next to the archive, so the archive as a whole is not checked "
            "against a store record; its members do match its internal manifest"
        )
    return True, "the archive matches the store's sidecar and every member matches the manifest"


def _signed(verification: tuple[bool, str], sidecar: Sidecar | None, allow_unsigned: bool) -> tuple[bool, str]:
    """The signature check, as a restore makes it, added to what the stream check found."""
    try:
        verdict = check_signature(sidecar, keys.trusted_keys(), allow_unsigned)
    except ArchiveError as exc:
        return False, f"{exc} (and: {verification[1]})"
    return verification[0], f"{verdict.detail}; {verification[1]}"


# -- the result ---------------------------------------------------------------------------------


def _describe(
    url: str,
    scan: Scan,
    verification: tuple[bool, str],
    processes: list[dict[str, Any]],
    stats: dict[str, int],
) -> dict[str, Any]:
    manifest = scan.manifest
    config = scan.config
    source = manifest.source if manifest else None
    return {
        "url": url,
        "verified": verification[0],
        "verification": verification[1],
        "container": {
            "name": _first(config.get("name"), manifest and manifest.container.name),
            "id": _first(config.get("id"), manifest and manifest.container.id),
        },
        "image": {
            "name": _first(config.get("rootfsImageName"), manifest and manifest.container.image_name),
            "id": _first(config.get("rootfsImageID"), manifest and manifest.container.image_id),
        },
        "engine": "podman",
        "runtime": _first(source and source.runtime, config.get("runtime")),
        "source": {
            "host": source.host if source else "",
            "kernel": source.kernel if source else "",
            "criu": source.criu if source else "",
            "podman": source.podman if source else "",
        },
        "created": _first(manifest and manifest.created, scan.created_fallback),
        "mode": manifest.mode if manifest else None,
        "compression": scan.compression,
        "members": scan.members,
        "sizes": {
            "archive": scan.archive_bytes,
            "total": scan.total_bytes,
            "memory_pages": scan.memory_pages,
            "rootfs_diff": scan.rootfs_diff,
            "changed_files": scan.changed_files,
            "deleted_files": scan.deleted_files,
        },
        "command": _command(scan.spec),
        "processes": processes,
        "dump_stats": stats,
    }


def _first(*values: object) -> str:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return ""


def _command(spec: dict[str, Any]) -> list[str]:
    process = spec.get("process")
    args = process.get("args") if isinstance(process, dict) else None
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return args
    return []

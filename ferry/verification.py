"""The whole check of one archive before anything on the host is touched: signature, envelope
(decryption), every member's sha256 and every path. ``ferry verify`` and the restore's verify
stage run it alone (:func:`verify_source`); a restore's receive stage runs it while it writes
the tar Podman will import (:func:`receive_source`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import BinaryIO

from ferry import keys, restore_policy
from ferry.archive.claims import Claims
from ferry.archive.envelope import open_plain
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import Report, receive
from ferry.archive.reader import verify as verify_stream
from ferry.archive.rebuild_context import RebuildContext
from ferry.archive.signing import check as check_signature
from ferry.archive.streams import Readable
from ferry.report import warn

log = logging.getLogger("ferry.verify")


def verify_source(
    source: Readable, sidecar: Sidecar | None, allow_unverified: bool = False, allow_unsigned: bool = False
) -> tuple[Report, str]:
    """Signature, envelope (decryption), every member and path: the whole check of one archive.

    Returns the report and what the signature check found. With ``allow_unsigned`` an archive
    without a trusted signature passes that one check; every other check still applies."""
    verdict = check_signature(sidecar, keys.trusted_keys(), allow_unsigned)
    opened = open_plain(source, sidecar, keys.encryption_key())
    ctx = RebuildContext(policy=restore_policy.load())
    report = verify_stream(opened.plain, sidecar=opened.sidecar, require_manifest=not allow_unverified, ctx=ctx)
    opened.check_stored()
    if not verdict.trusted:
        warn(log, f"{report.name}: {verdict.detail}")
    return report, verdict.detail


def receive_source(
    source: Readable,
    sidecar: Sidecar,
    sink: BinaryIO,
    *,
    claims: Claims,
    ctx: RebuildContext,
    allow_unsigned: bool = False,
    check_diff_path: Callable[[str], None] | None = None,
) -> tuple[Report, str]:
    """:func:`verify_source`'s checks, signature first, while the archive is rewritten into ``sink``
    for this host (``ctx``); then what was assumed before the walk (``claims``, from the sidecar's
    manifest) against what ``config.dump`` said. ``sink`` holds a usable tar only if this returns."""
    verdict = check_signature(sidecar, keys.trusted_keys(), allow_unsigned)
    opened = open_plain(source, sidecar, keys.encryption_key())
    plain_view = opened.sidecar or sidecar  # open_plain always returns one when given one
    verify_ctx = RebuildContext(policy=ctx.policy)  # what `ferry verify` measures against
    report = receive(
        opened.plain, sink, sidecar=plain_view, ctx=ctx, verify_ctx=verify_ctx, check_diff_path=check_diff_path
    )
    opened.check_stored()
    claims.check(report.name, report.image_id, report.image_name, report.volumes)
    if not verdict.trusted:
        warn(log, f"{report.name}: {verdict.detail}")
    return report, verdict.detail

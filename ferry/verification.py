"""The whole check of one archive before anything on the host is touched: signature, envelope
(decryption), every member's sha256 and every path. The restore's verify stage and
``ferry verify`` both run it."""

from __future__ import annotations

import logging

from ferry import keys, restore_policy
from ferry.archive.envelope import open_plain
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import Report
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

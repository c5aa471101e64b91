"""Stage 6, verify: every member's sha256 and every path checked before the host is touched."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from ferry import keys, restore_policy
from ferry.archive.envelope import open_plain
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import Report
from ferry.archive.reader import verify as verify_stream
from ferry.archive.rebuild_context import RebuildContext
from ferry.archive.signing import check as check_signature
from ferry.archive.streams import Readable
from ferry.faults import maybe_fail
from tasks.download import Fetched


@dataclass(frozen=True)
class Verified:
    fetched: Fetched
    report: Report


def verify_source(source: Readable, sidecar: Sidecar | None, allow_unverified: bool = False) -> Report:
    """Signature, envelope (decryption), every member and path: the whole check of one archive."""
    check_signature(sidecar, keys.signing_key())
    opened = open_plain(source, sidecar, keys.encryption_key())
    ctx = RebuildContext(policy=restore_policy.load())
    report = verify_stream(opened.plain, sidecar=opened.sidecar, require_manifest=not allow_unverified, ctx=ctx)
    opened.check_stored()
    return report


def verify(fetched: Fetched, allow_unverified: bool = False) -> Verified:
    maybe_fail("verify")
    with fetched.path.open("rb") as f:
        report = verify_source(f, fetched.sidecar, allow_unverified)
    return Verified(fetched, report)


@task(name="verify", retries=0, persist_result=True)
def verify_task(fetched: Fetched, allow_unverified: bool = False) -> Verified:
    return verify(fetched, allow_unverified)

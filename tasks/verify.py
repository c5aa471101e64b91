"""Stage 6, verify: every member's sha256 and every path checked before the host is touched."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from ferry import keys
from ferry.archive.envelope import open_plain
from ferry.archive.reader import Report
from ferry.archive.reader import verify as verify_stream
from ferry.archive.signing import check as check_signature
from ferry.faults import maybe_fail
from tasks.download import Fetched


@dataclass(frozen=True)
class Verified:
    fetched: Fetched
    report: Report


def verify(fetched: Fetched, allow_unverified: bool = False) -> Verified:
    maybe_fail("verify")
    check_signature(fetched.sidecar, keys.signing_key())
    with fetched.path.open("rb") as f:
        opened = open_plain(f, fetched.sidecar, keys.encryption_key())
        report = verify_stream(opened.plain, sidecar=opened.sidecar, require_manifest=not allow_unverified)
        opened.check_stored()
    return Verified(fetched, report)


@task(name="verify", retries=0, persist_result=True)
def verify_task(fetched: Fetched, allow_unverified: bool = False) -> Verified:
    return verify(fetched, allow_unverified)

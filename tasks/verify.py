"""Verify: the signature, every member's sha256 and every path, checked before the host is touched."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from ferry import progress
from ferry.archive.reader import Report
from ferry.faults import maybe_fail
from ferry.verification import verify_source
from tasks.download import Fetched


@dataclass(frozen=True)
class Verified:
    fetched: Fetched
    report: Report
    signature: str = ""  # who signed it, or that it was let through unsigned


def verify(fetched: Fetched, allow_unverified: bool = False, allow_unsigned: bool = False) -> Verified:
    maybe_fail("verify")
    with progress.stage("verify", total=fetched.size) as stage, fetched.path.open("rb") as f:
        report, signature = verify_source(stage.reader(f), fetched.sidecar, allow_unverified, allow_unsigned)
    return Verified(fetched, report, signature)


@task(name="verify", retries=0, persist_result=True)
def verify_task(fetched: Fetched, allow_unverified: bool = False, allow_unsigned: bool = False) -> Verified:
    return verify(fetched, allow_unverified, allow_unsigned)

"""``ferry doctor``: runs the host checks and prints them with their fixes."""

from __future__ import annotations

import argparse
import sys

from ferry.cli import exit_codes
from ferry.cli._args import Subparsers
from ferry.cli._output import emit

_LABELS = {"ok": "ok  ", "fail": "FAIL", "warn": "WARN", "info": "info"}


def register(sub: Subparsers) -> None:
    d = sub.add_parser("doctor", help="check this host can checkpoint and restore; says how to fix what cannot")
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.doctor import run_checks

    checks = run_checks()
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    code = exit_codes.FAILURE if failed else exit_codes.OK
    if args.json:
        emit(
            {
                "ok": not failed,
                "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks],
            }
        )
        return code
    for check in checks:
        print(f"{_LABELS[check.status]} {check.name}: {check.detail}")
        if check.status in ("fail", "warn") and check.fix:
            print("     fix: " + check.fix.replace("\n", "\n          "))
    if failed:
        print(f"\n{failed} check(s) failed: this host cannot checkpoint/restore yet.", file=sys.stderr)
    elif warned:
        print(f"\nThis host can checkpoint and restore containers, with {warned} warning(s) above.")
    else:
        print("\nThis host can checkpoint and restore containers.")
    return code

"""``ferry doctor``: runs the host checks and prints them with their fixes."""

from __future__ import annotations

import argparse
import sys

from ferry.cli._args import Subparsers

EXIT_FAILURE = 1
_LABELS = {"ok": "ok  ", "fail": "FAIL", "warn": "WARN", "info": "info"}


def register(sub: Subparsers) -> None:
    d = sub.add_parser("doctor", help="check this host can checkpoint and restore; says how to fix what cannot")
    d.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.doctor import run_checks

    failed = warned = 0
    for check in run_checks():
        print(f"{_LABELS[check.status]} {check.name}: {check.detail}")
        if check.status in ("fail", "warn") and check.fix:
            print("     fix: " + check.fix.replace("\n", "\n          "))
        failed += check.status == "fail"
        warned += check.status == "warn"
    if failed:
        print(f"\n{failed} check(s) failed: this host cannot checkpoint/restore yet.", file=sys.stderr)
        return EXIT_FAILURE
    if warned:
        print(f"\nThis host can checkpoint and restore containers, with {warned} warning(s) above.")
        return 0
    print("\nThis host can checkpoint and restore containers.")
    return 0

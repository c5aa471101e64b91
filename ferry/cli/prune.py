"""``ferry prune``: deletes old archives through the store."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from ferry.cli._args import Subparsers
from ferry.errors import UsageError


def register(sub: Subparsers) -> None:
    pr = sub.add_parser("prune", help="delete old archives per container; never the newest one")
    pr.add_argument("url", metavar="URL")
    pr.add_argument("--keep", type=int, metavar="N", help="keep the N newest archives of each container")
    pr.add_argument("--older-than", metavar="DURATION", help="only delete archives older than this (30d, 12h, 90m)")
    pr.add_argument("--container", help="only this container's archives")
    pr.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    pr.set_defaults(run=run)


def parse_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError) as exc:
        raise UsageError(f"Cannot read duration {text!r}: use a number and a unit, e.g. 30d, 12h, 90m.") from exc


def run(args: argparse.Namespace) -> int:
    from storage.options import resolve
    from storage.store import ArchiveStore

    older = parse_duration(args.older_than) if args.older_than else None
    store = ArchiveStore(args.url, resolve(None))
    doomed = store.prune(keep=args.keep, older_than=older, container=args.container, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for entry in doomed:
        print(f"{verb} {entry.url}")
    print(f"{verb} {len(doomed)} archive(s)", file=sys.stderr)
    return 0

"""``ferry prune``: deletes old archives through the store."""

from __future__ import annotations

import argparse
import sys

from ferry.cli._args import Subparsers, duration, store_argument, store_url
from ferry.cli._output import emit


def register(sub: Subparsers) -> None:
    pr = sub.add_parser("prune", help="delete old archives per container; never the newest one")
    store_argument(pr, help="the store's URL")
    pr.add_argument("--keep", type=int, metavar="N", help="keep the N newest archives of each container")
    pr.add_argument(
        "--older-than",
        type=duration(),
        metavar="DURATION",
        help="only delete archives older than this: a whole number and s, m, h, d or w (30d, 12h, 90m)",
    )
    pr.add_argument("--container", help="only this container's archives")
    pr.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    pr.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from storage.options import resolve
    from storage.store import ArchiveStore

    store = ArchiveStore(store_url(args.store), resolve(None))
    store.require()
    doomed = store.prune(keep=args.keep, older_than=args.older_than, container=args.container, dry_run=args.dry_run)
    if args.json:
        emit({"store": store.url, "dry_run": args.dry_run, "deleted": [e.url for e in doomed]})
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for entry in doomed:
        print(f"{verb} {entry.url}")
    print(f"{verb} {len(doomed)} archive(s)", file=sys.stderr)
    return 0

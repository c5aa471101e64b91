"""``ferry ls``: lists a store's archives; shows broken sidecars and, with --all, incomplete uploads."""

from __future__ import annotations

import argparse
import json
import sys

from ferry.cli._args import Subparsers


def register(sub: Subparsers) -> None:
    ls = sub.add_parser("ls", help="list the complete archives in a store, newest first")
    ls.add_argument("url", metavar="URL")
    ls.add_argument("--container", help="only this container's archives")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--all", action="store_true", help="also list incomplete uploads left by interrupted runs")
    ls.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from storage.options import resolve
    from storage.store import ArchiveStore

    store = ArchiveStore(args.url, resolve(None))
    entries, broken = store.listing(args.container)
    incomplete = store.incomplete() if args.all else []
    if args.json:
        for b in broken:  # the JSON on stdout stays a list of complete archives
            print(f"ferry: BROKEN {b.url}: {b.problem}", file=sys.stderr)
        print(
            json.dumps(
                [
                    {
                        "url": e.url,
                        "container": e.sidecar.manifest.container.name,
                        "created": e.sidecar.manifest.created,
                        "size": e.sidecar.size,
                        "host": e.sidecar.manifest.source.host,
                        "image": e.sidecar.manifest.container.image_name,
                        "mode": e.sidecar.manifest.mode,
                        "sha256": e.sidecar.sha256,
                    }
                    for e in entries
                ],
                indent=1,
            )
        )
        return 0
    for b in broken:
        print(f"BROKEN {b.url}: {b.problem}")
    for url in incomplete:
        print(f"INCOMPLETE {url}")
    if not entries:
        print(f"no complete archives under {args.url}", file=sys.stderr)
        return 0
    print(f"{'CONTAINER':20} {'CREATED':25} {'SIZE':>12} {'MODE':13} {'HOST':16} IMAGE / URL")
    for e in entries:
        m = e.sidecar.manifest
        print(
            f"{m.container.name:20} {m.created:25} {e.sidecar.size:>12} {m.mode:13} "
            f"{m.source.host:16} {m.container.image_name}\n    {e.url}"
        )
    return 0

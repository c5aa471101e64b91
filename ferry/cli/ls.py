"""``ferry ls``: lists a store's archives; shows broken sidecars and, with --all, incomplete uploads."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ferry.cli._args import Subparsers, store_argument, store_url
from ferry.cli._output import emit

if TYPE_CHECKING:
    from storage.store import BrokenEntry, Entry


def register(sub: Subparsers) -> None:
    ls = sub.add_parser("ls", help="list the complete archives in a store, newest first")
    store_argument(ls, help="the store's URL")
    ls.add_argument("--container", help="only this container's archives")
    ls.add_argument("--all", action="store_true", help="also list incomplete uploads left by interrupted runs")
    ls.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from storage.options import resolve
    from storage.store import ArchiveStore

    store = ArchiveStore(store_url(args.store), resolve(None))
    store.require()
    entries, broken = store.listing(args.container)
    incomplete = store.incomplete() if args.all else None
    if args.json:
        emit(document(store.url, entries, broken, incomplete))
        return 0
    for b in broken:
        print(f"BROKEN {b.url}: {b.problem}")
    for url in incomplete or []:
        print(f"INCOMPLETE {url}")
    if not entries:
        print(f"no complete archives under {store.url}", file=sys.stderr)
        return 0
    print(table(entries))
    return 0


def document(url: str, entries: list[Entry], broken: list[BrokenEntry], incomplete: list[str] | None) -> dict[str, Any]:
    """``ls --json`` (schemas/ls.json): ``incomplete`` is null unless ``--all`` asked for it."""
    return {
        "store": url,
        "archives": [
            {
                "url": e.url,
                "container": e.sidecar.manifest.container.name,
                "created": e.sidecar.manifest.created,
                "size": e.sidecar.size,
                "host": e.sidecar.manifest.source.host,
                "image": e.sidecar.manifest.container.image_name,
                "mode": e.sidecar.manifest.mode,
                "sha256": e.sidecar.sha256,
                "encrypted": bool(e.sidecar.encryption),
                "signed": bool(e.sidecar.signature),
            }
            for e in entries
        ],
        "broken": [{"url": b.url, "problem": b.problem} for b in broken],
        "incomplete": incomplete,
    }


def table(entries: list[Entry]) -> str:
    from ferry.humanize import age, size
    from ferry.inspection_view import safe

    lines = [f"{'CONTAINER':20} {'CREATED':34} {'SIZE':>10} {'MODE':13} {'HOST':16} IMAGE / URL"]
    for e in entries:
        m = e.sidecar.manifest
        created = f"{m.created} ({age(m.created)})"
        lines.append(
            safe(
                f"{m.container.name:20} {created:34} {size(e.sidecar.size):>10} {m.mode:13} "
                f"{m.source.host:16} {m.container.image_name}"
            )
        )
        lines.append(f"    {safe(e.url)}")
    return "\n".join(lines)

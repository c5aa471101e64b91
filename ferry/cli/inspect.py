"""``ferry inspect``: opens the archive in its store and shows what :mod:`ferry.inspection` finds."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ferry.cli._args import Subparsers, allow_unsigned

if TYPE_CHECKING:
    from ferry.runtime import Podman


def register(sub: Subparsers) -> None:
    ins = sub.add_parser("inspect", help="what an archive holds and whether this host can restore it")
    ins.add_argument("archive", metavar="ARCHIVE_URL")
    ins.add_argument("--json", action="store_true")
    allow_unsigned(ins)
    ins.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.inspection_view import format_inspection
    from storage.options import resolve

    data = inspect_archive(args.archive, resolve(None), allow_unsigned=args.allow_unsigned)
    print(json.dumps(data, indent=1) if args.json else format_inspection(data))
    return 0


def inspect_archive(
    url: str,
    storage_options: dict[str, Any] | None = None,
    runtime: Podman | None = None,
    allow_unsigned: bool = False,
) -> dict[str, Any]:
    """:func:`ferry.inspection.inspect_stream` over the archive at ``url`` and its sidecar. A
    malformed sidecar is a verification failure to show, not a reason to refuse the inspection."""
    from ferry.archive.manifest import Sidecar
    from ferry.errors import UnsupportedArchiveError
    from ferry.inspection import inspect_stream
    from storage.store import open_archive, read_sidecar

    sidecar: Sidecar | None = None
    problem = ""
    try:
        sidecar = read_sidecar(url, storage_options)
    except UnsupportedArchiveError as exc:
        problem = str(exc)
    with open_archive(url, storage_options) as source:
        return inspect_stream(
            url, source, sidecar, sidecar_problem=problem, runtime=runtime, allow_unsigned=allow_unsigned
        )

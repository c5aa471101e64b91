"""``ferry inspect``: opens the archive in its store and shows what :mod:`ferry.inspection` finds."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ferry.cli import exit_codes
from ferry.cli._args import Subparsers, archive_argument, trust_options
from ferry.cli._output import emit

if TYPE_CHECKING:
    from ferry.runtime import Podman


def register(sub: Subparsers) -> None:
    ins = sub.add_parser(
        "inspect",
        help="what an archive holds and whether this host can restore it; exit status 4 when a check fails",
    )
    archive_argument(ins)
    trust_options(ins, unverified=False)
    ins.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.inspection_view import format_inspection
    from storage.options import resolve

    data = inspect_archive(args.archive, resolve(None), allow_unsigned=args.allow_unsigned)
    if args.json:
        emit(data)
    else:
        print(format_inspection(data))
    return exit_codes.OK if passed(data) else exit_codes.REFUSED


def passed(data: dict[str, Any]) -> bool:
    """Verified, and no check against this host failed (a check that could not be asked is not a failure)."""
    return bool(data["verified"]) and all(check["ok"] is not False for check in data["compatibility"].values())


def inspect_archive(
    url: str,
    storage_options: dict[str, Any] | None = None,
    runtime: Podman | None = None,
    allow_unsigned: bool = False,
) -> dict[str, Any]:
    """:func:`ferry.inspection.inspect_stream` over the archive at ``url`` and its sidecar,
    decrypted with this host's key when it is encrypted. A malformed sidecar is a verification
    failure to show, not a reason to refuse the inspection."""
    from ferry.archive.manifest import Sidecar
    from ferry.errors import UnsupportedArchiveError
    from ferry.inspection import inspect_stream
    from ferry.keys import encryption_key
    from storage.reading import open_archive, read_sidecar

    sidecar: Sidecar | None = None
    problem = ""
    try:
        sidecar = read_sidecar(url, storage_options)
    except UnsupportedArchiveError as exc:
        problem = str(exc)
    with open_archive(url, storage_options) as source:
        return inspect_stream(
            url,
            source,
            sidecar,
            sidecar_problem=problem,
            runtime=runtime,
            allow_unsigned=allow_unsigned,
            key=encryption_key(),
        )

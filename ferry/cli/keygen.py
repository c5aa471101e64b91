"""``ferry keygen``: creates this host's signing key pair."""

from __future__ import annotations

import argparse

from ferry.cli._args import Subparsers
from ferry.cli._output import emit


def register(sub: Subparsers) -> None:
    kg = sub.add_parser("keygen", help="create this host's signing key pair; prints how to trust it elsewhere")
    kg.add_argument("--out", metavar="DIR", default="/etc/ferry", help="where to write signing.key and signing.pub")
    kg.add_argument("--name", help="the key's name in keyrings (default: ferry@<hostname>)")
    kg.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ferry.keygen import default_name, instructions, keygen

    pair = keygen(Path(args.out), args.name or default_name())
    if args.json:
        emit(
            {
                "name": pair.key.name,
                "private_key": str(pair.private),
                "public_key": str(pair.public),
                "fingerprint": pair.key.fingerprint,
                "public_line": pair.key.line(),
            }
        )
        return 0
    print(instructions(pair))
    return 0

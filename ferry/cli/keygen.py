"""``ferry keygen``: creates this host's signing key pair."""

from __future__ import annotations

import argparse

from ferry.cli._args import Subparsers


def register(sub: Subparsers) -> None:
    kg = sub.add_parser("keygen", help="create this host's signing key pair; prints how to trust it elsewhere")
    kg.add_argument("--out", metavar="DIR", default="/etc/ferry", help="where to write signing.key and signing.pub")
    kg.add_argument("--name", help="the key's name in keyrings (default: ferry@<hostname>)")
    kg.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ferry.keygen import default_name, instructions, keygen

    pair = keygen(Path(args.out), args.name or default_name())
    print(instructions(pair))
    return 0

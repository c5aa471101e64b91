"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse
from typing import Any

#: ``sub.add_parser``'s owner; argparse does not export the type.
Subparsers = Any


def allow_unsigned(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept an archive not signed by a key in this host's keyring (FERRY_TRUSTED_KEYS); "
        "every other check still applies",
    )

"""Argument plumbing shared by several subcommands: global options, the default store, strict
durations, the archive and trust options (verify, inspect, restore), and the network options
(snapshot, restore)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import timedelta
from typing import Any, NoReturn

from ferry.errors import UsageError

#: ``sub.add_parser``'s owner; argparse does not export the type.
Subparsers = Any

#: The store used when a command is given none.
STORE_ENV = "FERRY_STORE"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([1-9][0-9]{0,9})([smhdw])")


class ArgumentsError(UsageError):
    """What argparse found wrong with the command line, with the (sub)command it was parsing."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An argument error is a :class:`UsageError`, reported (and exited with) like any other."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise ArgumentsError(f"{message}. See `{self.prog} --help`.", self.prog)


def global_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    """Options accepted before and after the subcommand. On the subcommands' parsers they default
    to SUPPRESS, so an option given before the subcommand is not reset by the subparser."""
    default: Any = argparse.SUPPRESS if nested else False
    group = parser.add_argument_group("global options")
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="show Prefect's run logs (with tracebacks) on the console",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default,
        help="print one JSON document on stdout and nothing else (errors too); README: JSON output",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="show no progress (the result and errors are still printed)",
    )


def store_argument(parser: argparse.ArgumentParser, *flags: str, help: str = "") -> None:
    """The store's URL, optional: FERRY_STORE when it is not given (see :func:`store_url`)."""
    text = f"{help} (default: ${STORE_ENV})".strip()
    if flags:
        parser.add_argument(*flags, dest="store", metavar="URL", help=text)
    else:
        parser.add_argument("store", nargs="?", metavar="URL", help=text)


def store_url(given: str | None, what: str = "URL") -> str:
    url = given or os.environ.get(STORE_ENV, "").strip()
    if not url:
        raise UsageError(
            f"No store given: pass {what} (e.g. file:///var/lib/ferry/store or s3://bucket/prefix), "
            f"or set {STORE_ENV} to the store to use by default."
        )
    return url


def duration() -> Any:
    """An argparse type: a positive whole number and a unit (s, m, h, d, w), nothing else
    (argparse names the option in its message)."""

    def parse(text: str) -> timedelta:
        match = _DURATION.fullmatch(text.strip())
        if not match:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration: give a positive whole number and a unit (s, m, h, d or w), "
                "e.g. 30d, 12h, 90m"
            )
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])

    return parse


def positive_int() -> Any:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[1-9][0-9]{0,9}", text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number, 1 or more")
        return int(text)

    return parse


def archive_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE_URL")


def trust_options(parser: argparse.ArgumentParser, *, unverified: bool) -> None:
    """``--allow-unsigned``, and (verify, restore) ``--allow-unverified``."""
    if unverified:
        parser.add_argument(
            "--allow-unverified",
            action="store_true",
            help="accept an archive without a ferry manifest (a Podman export); paths are still checked",
        )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept an archive not signed by a key in this host's keyring (FERRY_TRUSTED_KEYS); "
        "every other check still applies",
    )


def state_options(parser: argparse.ArgumentParser, *, restore: bool) -> None:
    """The TCP and file-lock options: a snapshot's (what CRIU may dump) or a restore's."""
    if restore:
        parser.add_argument(
            "--tcp-established",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="restore established TCP connections as they were (default: off; for a restore that replaces "
            "the original, as a migration does)",
        )
        parser.add_argument(
            "--tcp-close",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="restore established TCP connections closed; the server keeps running and its clients "
            "reconnect (default: on, unless --tcp-established)",
        )
    else:
        parser.add_argument(
            "--tcp-established",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="dump established TCP connections (default: on; with --no-tcp-established a container "
            "with an open connection fails to checkpoint)",
        )
    parser.add_argument(
        "--file-locks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="restore file locks (default: on)"
        if restore
        else "dump file locks (default: on; with --no-file-locks a container holding a lock fails to checkpoint)",
    )

"""``ferry restore``: runs the restore flow."""

from __future__ import annotations

import argparse

from ferry.cli._args import Subparsers, allow_unsigned
from ferry.errors import UsageError


def register(sub: Subparsers) -> None:
    r = sub.add_parser("restore", help="restore a container from an archive URL")
    r.add_argument("archive", metavar="URL", help="the archive's URL; with --latest, the store's URL")
    r.add_argument("--name", help="restore under this name instead of the original")
    r.add_argument("--latest", metavar="CONTAINER", help="restore the newest complete snapshot of CONTAINER")
    r.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept an archive without a ferry manifest (a Podman export); paths are still checked",
    )
    r.add_argument(
        "--tcp-established",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="restore established TCP connections as they were (default: off; for a restore that replaces "
        "the original, as a migration does)",
    )
    r.add_argument(
        "--tcp-close",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="restore established TCP connections closed; the server keeps running and its clients "
        "reconnect (default: on, unless --tcp-established)",
    )
    r.add_argument(
        "--file-locks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="restore file locks (default: on)",
    )
    r.add_argument(
        "--ignore-static-ip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let the network assign a fresh IP rather than claim the archived one (default: on; "
        "--no-ignore-static-ip keeps it)",
    )
    r.add_argument(
        "--ignore-static-mac",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let the network assign a fresh MAC address rather than claim the archived one (default: on)",
    )
    r.add_argument(
        "--publish",
        "-p",
        action="append",
        default=[],
        metavar="[[IP:][HOSTPORT]:]PORT[/PROTO]",
        help="publish a port instead of the archived ones, Podman's syntax (repeatable)",
    )
    r.add_argument(
        "--timeout",
        type=int,
        default=None,
        metavar="SECONDS",
        help="give up on the CRIU restore after this long and remove what it left (default: 600)",
    )
    allow_unsigned(r)
    r.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.options import DEFAULT_RESTORE_TIMEOUT_S, restore_options
    from flows.restore import restore

    network = {
        "tcp_established": args.tcp_established,
        "tcp_close": args.tcp_close,
        "file_locks": args.file_locks,
        "ignore_static_ip": args.ignore_static_ip,
        "ignore_static_mac": args.ignore_static_mac,
        "publish": args.publish,
    }
    restore_options("restore", **network)  # a usage error before any flow run starts
    if args.timeout is not None and args.timeout < 1:
        raise UsageError(f"--timeout {args.timeout}: give a number of seconds, 1 or more.")
    from ferry.cli.prefect_server import use_for_this_command

    use_for_this_command()
    result = restore(
        args.archive,
        name=args.name,
        latest=args.latest,
        allow_unverified=args.allow_unverified,
        timeout_seconds=args.timeout or DEFAULT_RESTORE_TIMEOUT_S,
        **network,
        allow_unsigned=args.allow_unsigned,
    )
    print(f"restored container {result.name} ({result.id[:12]}), {result.state}")
    return 0

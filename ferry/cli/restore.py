"""``ferry restore``: runs the restore flow."""

from __future__ import annotations

import argparse
from typing import Any

from ferry.cli._args import Subparsers, positive_int, state_options, store_url, trust_options
from ferry.cli._output import emit
from ferry.errors import UsageError


def register(sub: Subparsers) -> None:
    r = sub.add_parser("restore", help="restore a container from an archive URL")
    r.add_argument(
        "archive",
        nargs="?",
        metavar="URL",
        help="the archive's URL; with --latest, the store's URL (default: $FERRY_STORE)",
    )
    r.add_argument("--name", help="restore under this name instead of the original")
    r.add_argument("--latest", metavar="CONTAINER", help="restore the newest complete snapshot of CONTAINER")
    state_options(r, restore=True)
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
        type=positive_int(),
        default=None,
        metavar="SECONDS",
        help="give up on the CRIU restore after this long and remove what it left (default: 600)",
    )
    trust_options(r, unverified=True)
    r.set_defaults(run=run)


def network(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's network parameters, checked here so a contradiction is a usage error before any
    flow run starts (the flow builds the :class:`ferry.options.RestoreOptions` from them)."""
    from ferry.options import restore_options

    chosen: dict[str, Any] = {
        "tcp_established": args.tcp_established,
        "tcp_close": args.tcp_close,
        "file_locks": args.file_locks,
        "ignore_static_ip": args.ignore_static_ip,
        "ignore_static_mac": args.ignore_static_mac,
        "publish": args.publish,
    }
    restore_options("restore", **chosen)
    return chosen


def source(args: argparse.Namespace) -> str:
    """The archive URL, or with ``--latest`` the store's (FERRY_STORE by default)."""
    if args.latest:
        return store_url(args.archive, "the store's URL")
    if not args.archive:
        raise UsageError("Say which archive to restore: its URL, or --latest CONTAINER to take the newest one.")
    return str(args.archive)


def run(args: argparse.Namespace) -> int:
    from ferry.options import DEFAULT_RESTORE_TIMEOUT_S

    archive = source(args)
    chosen = network(args)
    from ferry.cli.prefect_server import use_for_this_command

    use_for_this_command()
    from flows.restore import restore

    result = restore(
        archive,
        name=args.name,
        latest=args.latest,
        allow_unverified=args.allow_unverified,
        timeout_seconds=args.timeout or DEFAULT_RESTORE_TIMEOUT_S,
        **chosen,
        allow_unsigned=args.allow_unsigned,
    )
    if args.json:
        emit({"name": result.name, "id": result.id, "state": result.state, "source": archive, "latest": args.latest})
        return 0
    print(f"restored container {result.name} ({result.id[:12]}), {result.state}")
    return 0

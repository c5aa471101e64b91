"""``ferry snapshot``: runs the snapshot flow."""

from __future__ import annotations

import argparse
import sys

from ferry.cli._args import Subparsers


def register(sub: Subparsers) -> None:
    s = sub.add_parser("snapshot", help="checkpoint a container into a store; prints the archive URL")
    s.add_argument("container")
    s.add_argument("--to", required=True, metavar="URL", help="store URL (file:///path, s3://bucket/prefix, gs://...)")
    s.add_argument(
        "--leave-running",
        action="store_true",
        help="keep the container running (backup) instead of stopping it (migration)",
    )
    s.add_argument("--compress", choices=("zstd", "gzip", "none"), default="zstd")
    s.add_argument("--with-image", action="store_true", help="also store the image (once per image id)")
    s.add_argument(
        "--tcp-established",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dump established TCP connections (default: on; with --no-tcp-established a container "
        "with an open connection fails to checkpoint)",
    )
    s.add_argument(
        "--file-locks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="dump file locks (default: on; with --no-file-locks a container holding a lock fails to checkpoint)",
    )
    s.add_argument(
        "--allow-bind-mounts",
        action="store_true",
        help="snapshot a container that bind-mounts host paths; their content is NOT in the archive and "
        "the restoring host must provide the same paths (default: refuse, before anything stops)",
    )
    s.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.cli.prefect_server import use_for_this_command

    use_for_this_command()
    from flows.snapshot import snapshot

    result = snapshot(
        args.container,
        args.to,
        leave_running=args.leave_running,
        compress=args.compress,
        with_image=args.with_image,
        tcp_established=args.tcp_established,
        file_locks=args.file_locks,
        allow_bind_mounts=args.allow_bind_mounts,
    )
    print(
        f"snapshot of {result.container} ({result.mode}): {result.archive_bytes} bytes, "
        f"frozen {result.frozen_ms:.0f} ms",
        file=sys.stderr,
    )
    print(result.url)
    return 0

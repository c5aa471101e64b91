"""``ferry snapshot``: runs the snapshot flow."""

from __future__ import annotations

import argparse
import sys

from ferry.cli._args import Subparsers, state_options, store_argument, store_url
from ferry.cli._output import emit


def register(sub: Subparsers) -> None:
    s = sub.add_parser("snapshot", help="checkpoint a container into a store; prints the archive URL")
    s.add_argument("container")
    store_argument(s, "--to", help="store URL (file:///path, s3://bucket/prefix, gs://...)")
    s.add_argument(
        "--leave-running",
        action="store_true",
        help="keep the container running (backup) instead of stopping it (migration)",
    )
    s.add_argument("--compress", choices=("zstd", "gzip", "none"), default="zstd")
    s.add_argument("--with-image", action="store_true", help="also store the image (once per image id)")
    state_options(s, restore=False)
    s.add_argument(
        "--allow-bind-mounts",
        action="store_true",
        help="snapshot a container that bind-mounts host paths; their content is NOT in the archive and "
        "the restoring host must provide the same paths (default: refuse, before anything stops)",
    )
    s.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.humanize import size

    to = store_url(args.store, "--to URL")
    from ferry.cli.prefect_server import use_for_this_command

    use_for_this_command()
    from flows.snapshot import snapshot

    result = snapshot(
        args.container,
        to,
        leave_running=args.leave_running,
        compress=args.compress,
        with_image=args.with_image,
        tcp_established=args.tcp_established,
        file_locks=args.file_locks,
        allow_bind_mounts=args.allow_bind_mounts,
    )
    if args.json:
        emit(
            {
                "url": result.url,
                "container": result.container,
                "mode": result.mode,
                "archive_bytes": result.archive_bytes,
                "frozen_ms": result.frozen_ms,
                "image_url": result.image_url or None,
            }
        )
        return 0
    print(
        f"snapshot of {result.container} ({result.mode}): {size(result.archive_bytes)}, "
        f"frozen {result.frozen_ms:.0f} ms",
        file=sys.stderr,
    )
    print(result.url)
    return 0

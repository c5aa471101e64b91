"""The ``ferry`` command: parses arguments and calls flows or library functions, nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta

from ferry.errors import FerryError, UsageError
from storage.options import resolve

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferry",
        description="Checkpoint running Podman containers with CRIU into object storage, and "
        "restore them. The podman command line comes from FERRY_PODMAN (default: podman).",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show Prefect's run logs (with tracebacks) on the console",
    )
    sub = p.add_subparsers(dest="command", required=True)

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

    ls = sub.add_parser("ls", help="list the complete archives in a store, newest first")
    ls.add_argument("url", metavar="URL")
    ls.add_argument("--container", help="only this container's archives")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--all", action="store_true", help="also list incomplete uploads left by interrupted runs")

    pr = sub.add_parser("prune", help="delete old archives per container; never the newest one")
    pr.add_argument("url", metavar="URL")
    pr.add_argument("--keep", type=int, metavar="N", help="keep the N newest archives of each container")
    pr.add_argument("--older-than", metavar="DURATION", help="only delete archives older than this (30d, 12h, 90m)")
    pr.add_argument("--container", help="only this container's archives")
    pr.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")

    v = sub.add_parser("verify", help="check an archive's integrity and safety without restoring it")
    v.add_argument("archive", metavar="ARCHIVE_URL")
    v.add_argument("--allow-unverified", action="store_true")

    ins = sub.add_parser("inspect", help="what an archive holds and whether this host can restore it")
    ins.add_argument("archive", metavar="ARCHIVE_URL")
    ins.add_argument("--json", action="store_true")

    sub.add_parser("doctor", help="check this host can checkpoint and restore; says how to fix what cannot")
    return p


def _quiet_prefect(verbose: bool) -> None:
    # The operator gets one message per failure from us; Prefect's own logs (with tracebacks)
    # only with --verbose. Set before Prefect is imported, which reads them once.
    # The API handler is untouched, so the Prefect UI keeps every log line.
    if not verbose:
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def cmd_snapshot(args: argparse.Namespace) -> int:
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


def cmd_restore(args: argparse.Namespace) -> int:
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
    result = restore(
        args.archive,
        name=args.name,
        latest=args.latest,
        allow_unverified=args.allow_unverified,
        timeout_seconds=args.timeout or DEFAULT_RESTORE_TIMEOUT_S,
        **network,
    )
    print(f"restored container {result.name} ({result.id[:12]}), {result.state}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from storage.store import ArchiveStore

    store = ArchiveStore(args.url, resolve(None))
    entries = store.archives(args.container)
    incomplete = store.incomplete() if args.all else []
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "url": e.url,
                        "container": e.sidecar.manifest.container.name,
                        "created": e.sidecar.manifest.created,
                        "size": e.sidecar.size,
                        "host": e.sidecar.manifest.source.host,
                        "image": e.sidecar.manifest.container.image_name,
                        "mode": e.sidecar.manifest.mode,
                        "sha256": e.sidecar.sha256,
                    }
                    for e in entries
                ],
                indent=1,
            )
        )
        return 0
    for url in incomplete:
        print(f"INCOMPLETE {url}")
    if not entries:
        print(f"no complete archives under {args.url}", file=sys.stderr)
        return 0
    print(f"{'CONTAINER':20} {'CREATED':25} {'SIZE':>12} {'MODE':13} {'HOST':16} IMAGE / URL")
    for e in entries:
        m = e.sidecar.manifest
        print(
            f"{m.container.name:20} {m.created:25} {e.sidecar.size:>12} {m.mode:13} "
            f"{m.source.host:16} {m.container.image_name}\n    {e.url}"
        )
    return 0


def parse_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError) as exc:
        raise UsageError(f"Cannot read duration {text!r}: use a number and a unit, e.g. 30d, 12h, 90m.") from exc


def cmd_prune(args: argparse.Namespace) -> int:
    from storage.store import ArchiveStore

    older = parse_duration(args.older_than) if args.older_than else None
    store = ArchiveStore(args.url, resolve(None))
    doomed = store.prune(keep=args.keep, older_than=older, container=args.container, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for entry in doomed:
        print(f"{verb} {entry.url}")
    print(f"{verb} {len(doomed)} archive(s)", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from storage.store import open_archive, read_sidecar
    from tasks.verify import verify_source

    options = resolve(None)
    sidecar = read_sidecar(args.archive, options)
    with open_archive(args.archive, options) as f:
        report = verify_source(f, sidecar, args.allow_unverified)
    state = "verified against its manifest" if report.manifest else "NO MANIFEST: paths checked, integrity unknown"
    print(f"{args.archive}: OK, {state}")
    print(f"  container {report.name} image {report.image_name} ({report.image_id[:12]})")
    print(
        f"  {len(report.members)} members, {report.archive_size} bytes {report.compression}, "
        f"sha256 {report.archive_sha256}"
    )
    print(f"  rootfs diff: {report.diff_files} files, {report.diff_bytes} bytes; {len(report.deleted)} deleted paths")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from ferry.inspection import inspect_archive
    from ferry.inspection_view import format_inspection

    data = inspect_archive(args.archive, resolve(None))
    print(json.dumps(data, indent=1) if args.json else format_inspection(data))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from ferry.doctor import run_checks

    labels = {"ok": "ok  ", "fail": "FAIL", "warn": "WARN", "info": "info"}
    failed = warned = 0
    for check in run_checks():
        print(f"{labels[check.status]} {check.name}: {check.detail}")
        if check.status in ("fail", "warn") and check.fix:
            print("     fix: " + check.fix.replace("\n", "\n          "))
        failed += check.status == "fail"
        warned += check.status == "warn"
    if failed:
        print(f"\n{failed} check(s) failed: this host cannot checkpoint/restore yet.", file=sys.stderr)
        return EXIT_FAILURE
    if warned:
        print(f"\nThis host can checkpoint and restore containers, with {warned} warning(s) above.")
        return 0
    print("\nThis host can checkpoint and restore containers.")
    return 0


COMMANDS = {
    "prune": cmd_prune,
    "snapshot": cmd_snapshot,
    "restore": cmd_restore,
    "ls": cmd_ls,
    "verify": cmd_verify,
    "doctor": cmd_doctor,
    "inspect": cmd_inspect,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_prefect(args.verbose)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("ferry: %(message)s"))
    logging.getLogger("ferry").addHandler(handler)
    try:
        return COMMANDS[args.command](args)
    except FerryError as exc:
        print(f"ferry {args.command} failed ({exc.area}): {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.area == "usage" else EXIT_FAILURE
    except KeyboardInterrupt:
        print("ferry: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an operator gets a paragraph, not a traceback
        print(
            f"ferry {args.command} failed unexpectedly ({type(exc).__name__}): {exc}\n"
            "This is a bug in ferry or an unforeseen condition; run again with -v for the full "
            "logs and report them.",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())

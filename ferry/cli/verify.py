"""``ferry verify``: the restore's whole check of one archive, without restoring it."""

from __future__ import annotations

import argparse

from ferry.cli._args import Subparsers, allow_unsigned


def register(sub: Subparsers) -> None:
    v = sub.add_parser("verify", help="check an archive's integrity and safety without restoring it")
    v.add_argument("archive", metavar="ARCHIVE_URL")
    v.add_argument("--allow-unverified", action="store_true")
    allow_unsigned(v)
    v.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry.verification import verify_source
    from storage.options import resolve
    from storage.store import open_archive, read_sidecar

    options = resolve(None)
    sidecar = read_sidecar(args.archive, options)
    with open_archive(args.archive, options) as f:
        report, signature = verify_source(f, sidecar, args.allow_unverified, args.allow_unsigned)
    state = "verified against its manifest" if report.manifest else "NO MANIFEST: paths checked, integrity unknown"
    print(f"{args.archive}: OK, {state}")
    print(f"  {signature}")
    print(f"  container {report.name} image {report.image_name} ({report.image_id[:12]})")
    print(
        f"  {len(report.members)} members, {report.archive_size} bytes {report.compression}, "
        f"sha256 {report.archive_sha256}"
    )
    print(f"  rootfs diff: {report.diff_files} files, {report.diff_bytes} bytes; {len(report.deleted)} deleted paths")
    return 0

"""``ferry verify``: the restore's whole check of one archive, without restoring it."""

from __future__ import annotations

import argparse

from ferry.cli._args import Subparsers, archive_argument, trust_options
from ferry.cli._output import emit


def register(sub: Subparsers) -> None:
    v = sub.add_parser("verify", help="check an archive's integrity and safety without restoring it")
    archive_argument(v)
    trust_options(v, unverified=True)
    v.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferry import progress
    from ferry.humanize import size
    from ferry.verification import verify_source
    from storage.options import resolve
    from storage.reading import open_archive, read_sidecar

    options = resolve(None)
    sidecar = read_sidecar(args.archive, options)
    total = sidecar.size if sidecar is not None else None
    with progress.stage("verify", total=total, streams=True) as stage, open_archive(args.archive, options) as f:
        report, signature = verify_source(stage.reader(f), sidecar, args.allow_unverified, args.allow_unsigned)
    if args.json:
        emit(
            {
                "url": args.archive,
                "ok": True,
                "manifest": report.manifest is not None,
                "signature": signature,
                "container": report.name,
                "image": {"name": report.image_name, "id": report.image_id},
                "members": len(report.members),
                "archive_bytes": report.archive_size,
                "compression": report.compression,
                "sha256": report.archive_sha256,
                "rootfs_diff": {"files": report.diff_files, "bytes": report.diff_bytes, "deleted": len(report.deleted)},
            }
        )
        return 0
    state = "verified against its manifest" if report.manifest else "NO MANIFEST: paths checked, integrity unknown"
    print(f"{args.archive}: OK, {state}")
    print(f"  {signature}")
    print(f"  container {report.name} image {report.image_name} ({report.image_id[:12]})")
    print(
        f"  {len(report.members)} members, {size(report.archive_size)} {report.compression}, "
        f"sha256 {report.archive_sha256}"
    )
    print(f"  rootfs diff: {report.diff_files} files, {size(report.diff_bytes)}; {len(report.deleted)} deleted paths")
    return 0

"""Stage 3, archive: one compressed tar in Podman's export layout plus ferry's manifest.

Podman's dump members are streamed across as they are; the rootfs diff and deleted.files come
from stage 2; the manifest, covering every member's size and sha256, goes last.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.runtime import flow_run

from ferry.archive.compression import SUFFIX, Compression, check_compression
from ferry.archive.crypto import SCHEME, Encryptor
from ferry.archive.manifest import ContainerRef, Manifest
from ferry.archive.members import DELETED_FILES, ROOTFS_DIFF
from ferry.archive.streams import HashingWriter
from ferry.archive.writer import ArchiveDigest, ArchiveWriter
from ferry.errors import CheckpointError
from ferry.faults import maybe_fail
from ferry.keys import encryption_key
from tasks.dump import DumpResult
from tasks.inspect import Subject
from tasks.rootfs_diff import DiffResult


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    digest: ArchiveDigest  # of the archive itself
    manifest: Manifest
    stored: ArchiveDigest | None = None  # of the bytes stored, when they are encrypted
    encryption: str = ""


def build_archive(subject: Subject, dumped: DumpResult, diff: DiffResult, compression: str = "zstd") -> ArchiveResult:
    maybe_fail("archive")
    comp: Compression = check_compression(compression)
    info = subject.info
    out_path = dumped.export.parent / f"archive{SUFFIX[comp]}"
    template = Manifest(
        container=ContainerRef(info.name, info.id, info.image_id, info.image_name),
        source=subject.source,
        mode="leave-running" if dumped.leave_running else "stop",
        created=dumped.finished,
        timestamps={"dump_started": dumped.started, "dump_finished": dumped.finished},
        rootfs={"files": diff.files, "bytes": diff.bytes, "deleted": diff.deleted_count},
        run=str(flow_run.get_id() or ""),
    )
    key = encryption_key()
    with out_path.open("wb") as out:
        stored = HashingWriter(out)
        sealer = Encryptor(stored, key) if key else None
        writer = ArchiveWriter(sealer or out, comp)  # type: ignore[arg-type]
        with writer:
            with tarfile.open(dumped.export, "r|") as dump_tar:
                for member in dump_tar:
                    if member.name in (ROOTFS_DIFF, DELETED_FILES):
                        raise CheckpointError(f"Podman's export of {info.name!r} unexpectedly holds {member.name}.")
                    data = dump_tar.extractfile(member) if member.isreg() else None
                    writer.add_stream(member, data)  # type: ignore[arg-type]
            if diff.tar is not None:
                writer.add_path(diff.tar, ROOTFS_DIFF)
            if diff.deleted is not None:
                writer.add_path(diff.deleted, DELETED_FILES)
            manifest = writer.write_manifest(template)
        if sealer:
            sealer.finish()
    if writer.digest is None:
        raise RuntimeError("archive writer finished without a digest")
    if not sealer:
        return ArchiveResult(out_path, writer.digest, manifest)
    sealed = ArchiveDigest(stored.size, stored.hexdigest(), comp)
    return ArchiveResult(out_path, writer.digest, manifest, sealed, SCHEME)


@task(name="archive", retries=0, persist_result=True)
def archive_task(subject: Subject, dumped: DumpResult, diff: DiffResult, compression: str = "zstd") -> ArchiveResult:
    return build_archive(subject, dumped, diff, compression)

"""Archive: one compressed tar in Podman's export layout plus ferry's manifest, uploaded while
it is written.

Podman's dump members are streamed across as they are; the rootfs diff and deleted.files come
from the rootfs-diff stage; the manifest, covering every member's size and sha256, goes last. The
compressed stream goes straight into the store (multipart upload while compressing: no second
copy of the archive on disk, memory bounded by one part), unpublished until the publish stage
writes its sidecar.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from prefect import task
from prefect.runtime import flow_run

from ferry import progress
from ferry.archive.compression import SUFFIX, Compression, check_compression
from ferry.archive.crypto import SCHEME, Encryptor
from ferry.archive.manifest import ContainerRef, Manifest
from ferry.archive.members import DELETED_FILES, ROOTFS_DIFF
from ferry.archive.streams import HashingWriter
from ferry.archive.writer import ArchiveDigest, ArchiveWriter
from ferry.errors import CheckpointError
from ferry.faults import maybe_fail
from ferry.keys import encryption_key
from ferry.progress import human_bytes
from storage.ref import StoreRef
from storage.store import ArchiveStore
from tasks.dump import DumpResult
from tasks.inspect import Subject
from tasks.retry import transient
from tasks.rootfs_diff import DiffResult


@dataclass(frozen=True)
class ArchiveResult:
    path: Path | None  # the local archive; None when it was streamed straight into the store
    digest: ArchiveDigest  # of the archive itself
    manifest: Manifest
    stored: ArchiveDigest | None = None  # of the bytes stored, when they are encrypted
    encryption: str = ""
    key: str = ""  # where in the store it was streamed to (unpublished until its sidecar exists)


def archive_key(store: ArchiveStore, manifest: Manifest, compression: Compression) -> str:
    ref = manifest.container
    return store.key_for(ref.name, manifest.created, manifest.source.host, ref.id, SUFFIX[compression])


def build_archive(
    subject: Subject,
    dumped: DumpResult,
    diff: DiffResult,
    compression: str = "zstd",
    ref: StoreRef | None = None,
) -> ArchiveResult:
    """Write the archive straight into the store (a temporary name and a rename on local disk,
    an uncommitted multipart upload on object stores), where it stays invisible (no sidecar)
    until the upload stage publishes it. Without a store, into the run's staging dir."""
    maybe_fail("archive")
    comp: Compression = check_compression(compression)
    info = subject.info
    template = Manifest(
        container=ContainerRef(info.name, info.id, info.image_id, info.image_name),
        source=subject.source,
        mode="leave-running" if dumped.leave_running else "stop",
        created=dumped.finished,
        timestamps={"dump_started": dumped.started, "dump_finished": dumped.finished},
        rootfs={"files": diff.files, "bytes": diff.bytes, "deleted": diff.deleted_count},
        run=str(flow_run.get_id() or ""),
        dump_options=dumped.options.as_record(),
    )
    store = ref.open() if ref is not None else None
    inputs = [p for p in (dumped.export, diff.tar, diff.deleted) if p is not None]
    total = sum(p.stat().st_size for p in inputs)
    with progress.stage("archive", f"{info.name}, {comp}", total=total, artifact=f"archive of {info.name}") as stage:
        if store is not None:
            key = archive_key(store, template, comp)
            with store.open_archive_writer(key) as sink:
                result = replace(_write(sink, None, subject, dumped, diff, comp, template, stage), key=key)
        else:
            out_path = dumped.export.parent / f"archive{SUFFIX[comp]}"
            with out_path.open("wb") as out:
                result = _write(out, out_path, subject, dumped, diff, comp, template, stage)
        stored = result.stored or result.digest
        stage.note = f"{human_bytes(stored.size)} stored"
    return result


def _write(
    out: BinaryIO,
    out_path: Path | None,
    subject: Subject,
    dumped: DumpResult,
    diff: DiffResult,
    comp: Compression,
    template: Manifest,
    stage: progress.Stage | None = None,
) -> ArchiveResult:
    info = subject.info
    key = encryption_key()
    # ArchiveWriter hashes what it writes; a second hash is needed only for ciphertext.
    stored = HashingWriter(out) if key else None
    sealer = Encryptor(stored, key) if stored is not None and key else None
    writer = ArchiveWriter(sealer or out, comp, stage.advance if stage else None)  # type: ignore[arg-type]
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
    if sealer is None or stored is None:
        return ArchiveResult(out_path, writer.digest, manifest)
    sealed = ArchiveDigest(stored.size, stored.hexdigest(), comp)
    return ArchiveResult(out_path, writer.digest, manifest, sealed, SCHEME)


@task(name="archive", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient, persist_result=True)
def archive_task(
    subject: Subject,
    dumped: DumpResult,
    diff: DiffResult,
    compression: str = "zstd",
    ref: StoreRef | None = None,
) -> ArchiveResult:
    return build_archive(subject, dumped, diff, compression, ref)

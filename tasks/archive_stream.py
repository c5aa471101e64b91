"""Writing one snapshot archive from Podman's export as a stream: shared by the dump stage (which
archives Podman's export while Podman writes it) and the archive stage (which rebuilds the
archive from the dump's raw copy, ``dump.tar``, when the streamed one failed).

Podman's dump members are streamed across as they are; the rootfs diff and deleted.files come
from the rootfs-diff stage, before the export in stop mode (compressed while CRIU dumps, see
:mod:`tasks.dump`) and after it in leave-running mode (so the thaw never waits on them); the
manifest, covering every member's size and sha256, goes last. Readers take the members in any
order. The
compressed stream goes straight into the store (multipart upload while compressing: no second
copy of the archive on disk, memory bounded by one part), unpublished until the publish stage
writes its sidecar. Without a store (tests, benchmarks) it goes into the run's staging dir.
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from ferry import progress
from ferry.archive.compression import SUFFIX, Compression
from ferry.archive.crypto import SCHEME, Encryptor
from ferry.archive.manifest import ContainerRef, Manifest
from ferry.archive.members import DELETED_FILES, ROOTFS_DIFF
from ferry.archive.streams import HashingWriter, Readable
from ferry.archive.writer import ArchiveDigest, ArchiveWriter
from ferry.errors import CheckpointError
from ferry.keys import encryption_key
from ferry.options import DumpOptions
from storage.ref import StoreRef
from storage.store import ArchiveStore
from tasks.inspect import Subject
from tasks.rootfs_diff import DiffResult

#: tarfile's stream reader joins and slices its buffer on every read: 64 KiB blocks keep those
#: copies small while the writer asks for 1 MiB at a time (measured: 1 MiB here costs more).
READ_BLOCK = 1 << 16


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


def manifest_template(
    subject: Subject,
    diff: DiffResult,
    *,
    leave_running: bool,
    created: str,
    timestamps: dict[str, str],
    options: DumpOptions,
    run: str,
) -> Manifest:
    info = subject.info
    return Manifest(
        container=ContainerRef(info.name, info.id, info.image_id, info.image_name),
        source=subject.source,
        mode="leave-running" if leave_running else "stop",
        created=created,
        timestamps=timestamps,
        rootfs={"files": diff.files, "bytes": diff.bytes, "deleted": diff.deleted_count},
        run=run,
        dump_options=options.as_record(),
    )


class ArchiveOut:
    """One archive being written: :meth:`add_rootfs` and :meth:`add_export` (in either order), then
    :meth:`finish`, inside the ``with``; :attr:`result` after it. Leaving the block with an
    exception discards what was written (an object-store upload is never committed, a local file
    is removed)."""

    def __init__(
        self,
        subject: Subject,
        compression: Compression,
        ref: StoreRef | None,
        out_dir: Path,
        template: Manifest,
        stage: progress.Stage | None = None,
    ) -> None:
        self.subject = subject
        self.compression = compression
        self.store = ref.open() if ref is not None else None
        self.key = archive_key(self.store, template, compression) if self.store is not None else ""
        self.out_path = None if self.store is not None else out_dir / f"archive{SUFFIX[compression]}"
        self.stage = stage  # may be given later: the bytes written before it are not counted
        self._stack = contextlib.ExitStack()
        self._stored: HashingWriter | None = None
        self._sealer: Encryptor | None = None
        self._writer: ArchiveWriter | None = None
        self._manifest: Manifest | None = None
        self.result: ArchiveResult | None = None

    def __enter__(self) -> ArchiveOut:
        stack = self._stack
        try:
            if self.store is not None:
                sink: BinaryIO = stack.enter_context(self.store.open_archive_writer(self.key))
            else:
                sink = stack.enter_context(_local_file(_required(self.out_path)))
            key = encryption_key()
            # ArchiveWriter hashes what it writes; a second hash is needed only for ciphertext.
            if key:
                self._stored = HashingWriter(sink)
                self._sealer = Encryptor(self._stored, key)
                stack.push(self._seal)
            self._writer = ArchiveWriter(self._sealer or sink, self.compression, self._advance)  # type: ignore[arg-type]
            stack.enter_context(self._writer)
        except BaseException:
            stack.close()
            raise
        return self

    def _advance(self, n: int) -> None:
        if self.stage is not None:
            self.stage.advance(n)

    def _seal(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None and self._sealer is not None:
            self._sealer.finish()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is not None:
            return
        writer, manifest = self._writer, self._manifest
        if writer is None or writer.digest is None or manifest is None:
            raise RuntimeError("archive finished without a digest or a manifest")
        if self._stored is None:
            self.result = ArchiveResult(self.out_path, writer.digest, manifest, key=self.key)
        else:
            sealed = ArchiveDigest(self._stored.size, self._stored.hexdigest(), self.compression)
            self.result = ArchiveResult(self.out_path, writer.digest, manifest, sealed, SCHEME, key=self.key)

    @property
    def writer(self) -> ArchiveWriter:
        if self._writer is None:
            raise RuntimeError("use ArchiveOut as a context manager")
        return self._writer

    def add_export(self, export: Readable, on_member: Callable[[str], None] | None = None) -> None:
        """Stream every member of Podman's export (an uncompressed tar) across; ``on_member``
        is told each member's name before its bytes are read."""
        name = self.subject.info.name
        with tarfile.open(fileobj=export, mode="r|", bufsize=READ_BLOCK) as dump_tar:  # type: ignore[call-overload]
            for member in dump_tar:
                if on_member is not None:
                    on_member(member.name)
                if member.name in (ROOTFS_DIFF, DELETED_FILES):
                    raise CheckpointError(f"Podman's export of {name!r} unexpectedly holds {member.name}.")
                data = dump_tar.extractfile(member) if member.isreg() else None
                self.writer.add_stream(member, data)

    def add_rootfs(self, diff: DiffResult) -> None:
        """Add the rootfs diff and deleted.files (each when there is one)."""
        if diff.tar is not None:
            self.writer.add_path(diff.tar, ROOTFS_DIFF)
        if diff.deleted is not None:
            self.writer.add_path(diff.deleted, DELETED_FILES)

    def finish(self, template: Manifest) -> None:
        """Add the manifest, last."""
        self._manifest = self.writer.write_manifest(template)


def _required(path: Path | None) -> Path:
    if path is None:
        raise RuntimeError("an archive without a store needs a local path")
    return path


@contextlib.contextmanager
def _local_file(path: Path) -> Iterator[BinaryIO]:
    try:
        with path.open("wb") as f:
            yield f
    except BaseException:
        path.unlink(missing_ok=True)
        raise

"""Write a checkpoint archive in Podman's export layout as one compressed stream."""

from __future__ import annotations

import contextlib
import io
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from ferry.archive.compression import Compression, compressing
from ferry.archive.manifest import Manifest, MemberDigest
from ferry.archive.members import MANIFEST
from ferry.archive.streams import CountingReader, HashingReader, HashingWriter, HashThread

#: The size of the blocks the tar is read, copied and compressed in (tarfile's default of 10 and
#: 16 KiB makes per-call overhead, not compression, bound the stage).
BLOCK = 1 << 20


@dataclass(frozen=True)
class ArchiveDigest:
    size: int
    sha256: str
    compression: Compression


class _Appending:
    """What tarfile needs of a file it only appends to (``write`` and ``tell``), so that it
    writes each block straight into the compressor; its stream mode (``w|``) would copy every
    block into a buffer of its own first."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._sink.write(data)
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset


class ArchiveWriter:
    """Streams members into ``tar | compressor | sink``, hashing each one as it passes.

    Use as a context manager; call :meth:`write_manifest` last. The archive digest (size and
    sha256 of the compressed bytes) is available as :attr:`digest` after the ``with`` block.
    Every sha256 (of each member, of the output) is computed on one background thread
    (:class:`ferry.archive.streams.HashThread`) while this one reads, tars and compresses; a
    member's digest is collected when the manifest is written, so no member waits for its own.
    """

    def __init__(self, sink: BinaryIO, compression: Compression, on_bytes: Callable[[int], None] | None = None) -> None:
        self._hashes = HashThread()
        self._sink = HashingWriter(sink, self._hashes.sha256())
        self._on_bytes = on_bytes  # told the size of each chunk of member bytes read
        self._compression = compression
        self._stack = contextlib.ExitStack()
        self._tar: tarfile.TarFile | None = None
        self._hashed: list[tuple[str, HashingReader]] = []
        self.digest: ArchiveDigest | None = None

    def __enter__(self) -> ArchiveWriter:
        try:
            stream = self._stack.enter_context(compressing(self._sink, self._compression))  # type: ignore[arg-type]
            self._tar = self._stack.enter_context(
                tarfile.TarFile(fileobj=_Appending(stream), mode="w", format=tarfile.PAX_FORMAT, copybufsize=BLOCK)  # type: ignore[arg-type]
            )
        except BaseException:
            self._stack.close()
            self._hashes.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._stack.__exit__(exc_type, exc, tb)  # the tar, then the compressed frame, into the sink
            if exc_type is None:
                self.digest = ArchiveDigest(self._sink.size, self._sink.hexdigest(), self._compression)
        finally:
            self._hashes.close()

    @property
    def members(self) -> list[MemberDigest]:
        """Size and sha256 of every regular file added so far (waits for the hash thread)."""
        return [MemberDigest(name, reader.size, reader.hexdigest()) for name, reader in self._hashed]

    @property
    def tar(self) -> tarfile.TarFile:
        if self._tar is None:
            raise RuntimeError("use ArchiveWriter as a context manager")
        return self._tar

    def add_stream(self, info: tarfile.TarInfo, fileobj: BinaryIO | None = None) -> None:
        """Add one entry; a regular file's bytes come from ``fileobj`` and are hashed."""
        if info.isreg():
            if fileobj is None:
                raise ValueError(f"regular file {info.name} needs its bytes")
            source = CountingReader(fileobj, self._on_bytes) if self._on_bytes else fileobj
            reader = HashingReader(source, hasher=self._hashes.sha256())
            self.tar.addfile(info, reader)
            self._hashed.append((info.name, reader))
        else:
            self.tar.addfile(info)

    def add_path(self, path: Path, arcname: str) -> None:
        """Add a file or a directory tree from disk (directories first, sorted, no links)."""
        st = path.lstat()
        info = self.tar.gettarinfo(str(path), arcname)
        if info.isdir():
            self.add_stream(info)
            for child in sorted(path.iterdir()):
                self.add_path(child, f"{arcname}/{child.name}")
        elif info.isreg():
            with path.open("rb") as f:
                self.add_stream(info, f)
        else:
            raise ValueError(f"{path} is not a regular file or directory (mode {oct(st.st_mode)})")

    def write_manifest(self, template: Manifest) -> Manifest:
        """Write the manifest (covering every member so far) as the last member."""
        manifest = replace(template, members=tuple(self.members))
        data = manifest.to_json()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(time.time())
        self.tar.addfile(info, io.BytesIO(data))
        return manifest

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
from ferry.archive.streams import CountingReader, HashingReader, HashingWriter


@dataclass(frozen=True)
class ArchiveDigest:
    size: int
    sha256: str
    compression: Compression


class ArchiveWriter:
    """Streams members into ``tar | compressor | sink``, hashing each one as it passes.

    Use as a context manager; call :meth:`write_manifest` last. The archive digest (size and
    sha256 of the compressed bytes) is available as :attr:`digest` after the ``with`` block.
    """

    def __init__(self, sink: BinaryIO, compression: Compression, on_bytes: Callable[[int], None] | None = None) -> None:
        self._sink = HashingWriter(sink)
        self._on_bytes = on_bytes  # told the size of each chunk of member bytes read
        self._compression = compression
        self._stack = contextlib.ExitStack()
        self._tar: tarfile.TarFile | None = None
        self.members: list[MemberDigest] = []
        self.digest: ArchiveDigest | None = None

    def __enter__(self) -> ArchiveWriter:
        stream = self._stack.enter_context(compressing(self._sink, self._compression))  # type: ignore[arg-type]
        self._tar = self._stack.enter_context(tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self.digest = ArchiveDigest(self._sink.size, self._sink.hexdigest(), self._compression)

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
            reader = HashingReader(CountingReader(fileobj, self._on_bytes) if self._on_bytes else fileobj)
            self.tar.addfile(info, reader)
            self.members.append(MemberDigest(info.name, reader.size, reader.hexdigest()))
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

"""The read side of the archive store, by archive URL: an archive's sidecar, whether it is
published, and its bytes (opened, streamed once with read-ahead, or copied to a local file).
Errors come out as :class:`ferry.errors.StoreError` naming the URL, as in :mod:`storage.store`."""

from __future__ import annotations

import contextlib
import posixpath
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ferry.archive.manifest import Sidecar
from ferry.errors import ArchiveNotFoundError
from storage.fsio import (
    CHUNK,
    PARTIAL_SUFFIX,
    ByteCallback,
    bounded_get,
    copy_stream,
    filesystem,
    is_local,
    translated,
)

#: The sidecar of ``<archive>`` is ``<archive>.ferry.json``.
SIDECAR_SUFFIX = ".ferry.json"


def read_sidecar(archive_url: str, storage_options: dict[str, Any] | None = None) -> Sidecar | None:
    """The sidecar of an archive, or None for an archive without one (a Podman export)."""
    fs, path = filesystem(archive_url, storage_options)
    with translated("read", archive_url):
        if not fs.exists(path):
            raise ArchiveNotFoundError(f"There is no archive at {archive_url}.")
        if not fs.exists(path + SIDECAR_SUFFIX):
            return None
        return Sidecar.from_json(fs.cat_file(path + SIDECAR_SUFFIX))


def published(archive_url: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Whether the archive's sidecar is there (asked of the store itself, not a cached listing)."""
    fs, path = filesystem(archive_url, storage_options)
    with translated("read", archive_url):
        fs.invalidate_cache(posixpath.dirname(path))
        return bool(fs.exists(path + SIDECAR_SUFFIX))


@contextlib.contextmanager
def open_archive(archive_url: str, storage_options: dict[str, Any] | None = None) -> Iterator[BinaryIO]:
    fs, path = filesystem(archive_url, storage_options)
    with translated("read", archive_url, wraps_caller=True), fs.open(path, "rb", block_size=CHUNK) as f:
        yield f


@contextlib.contextmanager
def stream_archive(
    archive_url: str, storage_options: dict[str, Any] | None = None
) -> Iterator[_StoreReader | _ReadAhead]:
    """The archive's bytes, to read once from start to end with no local copy (from an object
    store, read ahead in a thread). A failure of the
    store while reading (a cut connection the backend gave up on) comes out of ``read`` as a
    :class:`StoreError` naming the URL; what the caller raises itself passes unchanged."""
    fs, path = filesystem(archive_url, storage_options)
    local = is_local(fs)
    with translated("read", archive_url):
        # An object store's file without fsspec's cache: its read-ahead cache would fetch and
        # hold a second block per read, while _ReadAhead already keeps the next request under way.
        # (A local file keeps fsspec's default: without it a heavy restore measured 1 s slower.)
        f = fs.open(path, "rb", block_size=CHUNK) if local else fs.open(path, "rb", block_size=CHUNK, cache_type="none")
    reader = _StoreReader(f, archive_url)
    ahead = None if local else _ReadAhead(reader)
    try:
        yield ahead or reader
    finally:
        if ahead is not None:
            ahead.close()
        with contextlib.suppress(Exception):
            f.close()


class _StoreReader:
    """The read side of :func:`stream_archive`: backend errors become :class:`StoreError`."""

    def __init__(self, f: Any, url: str) -> None:
        self._f, self._url = f, url

    def read(self, size: int = -1, /) -> bytes:
        with translated("read", self._url):
            return bytes(self._f.read(size))


class _ReadAhead:
    """An object store's bytes fetched a block ahead, in a thread: the next request is under way
    while the reader decompresses, hashes and writes (at most ``depth`` blocks held). A failure
    of the store is raised to the reader where it would have come."""

    def __init__(self, source: _StoreReader, depth: int = 1) -> None:
        self._source = source
        self._blocks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._eof = False
        self._thread = threading.Thread(target=self._fetch, name="ferry-read-ahead", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        try:
            while not self._stop.is_set():
                block = self._source.read(CHUNK)
                self._put(block)
                if not block:
                    return
        except BaseException as exc:  # handed to the reader
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1, /) -> bytes:
        parts = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            if not self._buf:
                if self._eof:
                    break
                item = self._blocks.get()
                if isinstance(item, BaseException):
                    raise item
                if not item:
                    self._eof = True
                    break
                self._buf = memoryview(item)
            take = len(self._buf) if wanted is None else min(wanted, len(self._buf))
            parts.append(self._buf[:take])
            self._buf = self._buf[take:]
            if wanted is not None:
                wanted -= take
        return b"".join(parts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def download(
    archive_url: str,
    dest: Path,
    storage_options: dict[str, Any] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Copy an archive to a local file (atomically: a .partial name, then rename). Object stores
    use the backend's own get_file, which fetches ranges concurrently."""
    tmp = dest.with_name(dest.name + PARTIAL_SUFFIX)
    fs, path = filesystem(archive_url, storage_options)
    try:
        if is_local(fs):
            with open_archive(archive_url, storage_options) as src, tmp.open("wb") as out:
                copy_stream(src, out, on_bytes)
        else:
            with translated("download", archive_url):
                fs.get_file(path, str(tmp), callback=ByteCallback(on_bytes), **bounded_get(fs))
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest.stat().st_size

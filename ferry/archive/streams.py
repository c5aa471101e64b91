"""Small stream wrappers, all of ferry's in one place: hashing, counting and bounding bytes as they
pass; replaying a peeked header; reading whole blocks from a source that returns short reads."""

from __future__ import annotations

import hashlib
import io
import queue
import tarfile
import threading
from collections.abc import Callable
from typing import BinaryIO, Protocol

from ferry.errors import UnsafeArchiveError

CHUNK = 1 << 20
#: tarfile's stream record buffer (10 KiB by default) for the outer archive, a few dozen members:
#: a chunk, so a member streams through the hashing and counting wrappers in a few large reads.
TAR_BUFFER = CHUNK
#: For nested tars, which may hold a great many small entries: tarfile copies what is left of its
#: buffer on every read and write, so a smaller one keeps each header cheap.
NESTED_TAR_BUFFER = 64 << 10


class HashingWriter(io.RawIOBase):
    """Write-through wrapper that keeps the sha256 and the byte count of what it passed on."""

    def __init__(self, sink: BinaryIO, digest: Digest | None = None) -> None:
        super().__init__()
        self._sink = sink
        self._hash: Digest = digest or hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._hash.update(data)
        size = len(data) if isinstance(data, bytes) else memoryview(data).nbytes
        self.size += size
        self._sink.write(data)
        return size

    def hexdigest(self) -> str:
        if self._hash is None:
            raise ValueError("this reader only counts bytes")
        return self._hash.hexdigest()


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Digest(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


class HashingReader:
    """Read-through wrapper keeping sha256 and count; refuses to pass more than ``limit`` bytes.

    The limit is what bounds a decompression bomb: the reader stops the stream instead of
    letting a small archive expand without end.
    """

    def __init__(
        self,
        source: Readable,
        *,
        limit: int | None = None,
        what: str = "archive",
        digest: bool = True,
        hasher: Digest | None = None,
    ) -> None:
        self._source = source
        self._hash: Digest | None = (hasher or hashlib.sha256()) if digest else None
        self._limit = limit
        self._what = what
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise UnsafeArchiveError(
                f"The {self._what} expands to more than {self._limit} bytes, the limit for this "
                "archive. It is refused as a possible decompression bomb; if it is genuine, raise "
                "FERRY_MAX_EXPANDED_BYTES."
            )
        return data

    def hexdigest(self) -> str:
        if self._hash is None:
            raise ValueError("this reader only counts bytes")
        return self._hash.hexdigest()


class CountingReader:
    """Read-through wrapper telling ``on_bytes`` the size of each chunk read (progress)."""

    def __init__(self, source: Readable, on_bytes: Callable[[int], None]) -> None:
        self._source = source
        self._on_bytes = on_bytes

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        self._on_bytes(len(data))
        return data


def drain(reader: Readable) -> None:
    """Read a stream to its end (so a hashing wrapper sees every byte)."""
    while reader.read(CHUNK):
        pass


class Prefixed(io.RawIOBase):
    """Replays bytes already read for detection, then continues with the source."""

    def __init__(self, head: bytes, source: Readable) -> None:
        super().__init__()
        self._head = head
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)


class FullReads:
    """Returns short reads only at the end of the stream: format detection reads one header and
    needs all of it, whatever the source (a peeking wrapper, a network stream) hands back."""

    def __init__(self, source: Readable) -> None:
        self._source = source

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if size < 0 or not data or len(data) >= size:
            return data
        parts = [data]
        got = len(data)
        while got < size and (more := self._source.read(size - got)):
            parts.append(more)
            got += len(more)
        return b"".join(parts)


class HashThread:
    """sha256 digests computed on one background thread, off the thread that moves the bytes.

    hashlib releases the GIL while it hashes a buffer, so the thread compressing and writing and
    this one hash in parallel. Updates are queued in order (a bounded queue: at most ``depth``
    blocks wait, which bounds memory); :meth:`ThreadedDigest.hexdigest` waits for the queue to
    empty. Use as a context manager."""

    def __init__(self, depth: int = 16) -> None:
        self._queue: queue.Queue[tuple[hashlib._Hash, bytes] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._work, name="ferry-hash", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            digest, data = item
            digest.update(data)
            self._queue.task_done()
        self._queue.task_done()

    def sha256(self) -> ThreadedDigest:
        return ThreadedDigest(self)

    def put(self, digest: hashlib._Hash, data: bytes) -> None:
        if not self._thread.is_alive():
            raise RuntimeError("the hash thread is closed")
        self._queue.put((digest, data))

    def wait(self) -> None:
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> HashThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ThreadedDigest:
    """A sha256 (``update``, ``hexdigest``, as hashlib's) computed by a :class:`HashThread`."""

    def __init__(self, thread: HashThread) -> None:
        self._thread = thread
        self._hash = hashlib.sha256()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # A bytes object cannot change while it waits in the queue; anything else is copied.
        self._thread.put(self._hash, data if isinstance(data, bytes) else bytes(data))

    def hexdigest(self) -> str:
        self._thread.wait()
        return self._hash.hexdigest()


def tar_stream(fileobj: object, mode: str, bufsize: int = TAR_BUFFER) -> tarfile.TarFile:
    """tarfile's stream mode (``"r|"`` or ``"w|"``, PAX) with a ``bufsize`` record buffer, and
    members copied a chunk at a time (16 KiB by default)."""
    tar: tarfile.TarFile = tarfile.open(fileobj=fileobj, mode=mode, bufsize=bufsize, format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
    tar.copybufsize = CHUNK  # type: ignore[attr-defined]  # TarFile has it (3.8+); typeshed does not say so
    return tar

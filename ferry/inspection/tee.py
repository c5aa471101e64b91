"""One pass over a stream for two readers: the caller's check, and a consumer thread reading a copy.

``ferry inspect`` verifies an archive and scans it at once, so a large or remote archive is fetched
exactly once. Memory stays bounded: the copy goes through a queue of at most ``QUEUE_DEPTH`` chunks,
and the reading side blocks while the consumer is behind.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from ferry.archive.streams import Readable, drain

#: Chunks in flight between the checker and the consumer (each up to 1 MiB).
QUEUE_DEPTH = 16

T = TypeVar("T")


def read_twice(source: Readable, consumer: Callable[[Readable], None], check: Callable[[Readable], T]) -> tuple[T, int]:
    """Run ``check`` over ``source`` in this thread while ``consumer`` reads a copy of the same
    bytes in another; returns what ``check`` returned and how many bytes the stream held.

    ``consumer`` must read its source to the end (or the checker blocks on a full queue) and must
    not raise: it records its own errors."""
    chunks: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_DEPTH)
    worker = threading.Thread(target=consumer, args=(_QueueReader(chunks),), name="ferry-inspect", daemon=True)
    tee = _Tee(source, chunks)
    worker.start()
    try:
        result = check(tee)
        drain(tee)  # the check may stop at the first problem; the consumer goes on to the end
    finally:
        chunks.put(b"")  # end of stream, exactly once: the consumer reads until it sees it
        worker.join()
    return result, tee.size


class _Tee:
    """The checker's source: passes each chunk on and hands a copy to the consumer."""

    def __init__(self, source: Readable, chunks: queue.Queue[bytes]) -> None:
        self._source = source
        self._chunks = chunks
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if data:  # b"" is reserved for the end of the stream
            self.size += len(data)
            self._chunks.put(data)  # blocks while the consumer is behind: memory stays bounded
        return data


class _QueueReader:
    """The consumer's source: the chunks the checker read, in order."""

    def __init__(self, chunks: queue.Queue[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._eof = False

    def read(self, size: int = -1, /) -> bytes:
        if not self._buffer and not self._eof:
            self._buffer = self._chunks.get()
            self._eof = not self._buffer
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

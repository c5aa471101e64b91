"""Compression of the archive stream: zstd (default), gzip or none, detected by magic bytes.

Detection never trusts the file name: Podman 4.3 writes zstd even into a file named .tar.gz.
"""

from __future__ import annotations

import contextlib
import gzip
import io
from collections.abc import Iterator
from typing import BinaryIO, Literal

import zstandard

from ferry.archive.streams import Prefixed, Readable
from ferry.errors import UnsupportedArchiveError, UsageError

Compression = Literal["zstd", "gzip", "none"]
COMPRESSIONS: tuple[Compression, ...] = ("zstd", "gzip", "none")
SUFFIX: dict[Compression, str] = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_LEVEL = 2  # chosen by measurement: bench/bounds.md, "zstd level"
# Each of zstd's worker threads compresses one job of this many bytes at a time. zstd's own
# choice at level 2 (8 MiB) holds about 56 MiB in its buffers, 2 MiB about 30 MiB, for the same
# speed and 0.6% more output (bench/bounds.md, "zstd job size").
ZSTD_JOB_SIZE = 2 << 20
GZIP_LEVEL = 6
# 2 GiB: enough for any window a zstd encoder picks at sane levels, bounded so a hostile
# frame header cannot make the decoder reserve unbounded memory.
ZSTD_MAX_WINDOW = 1 << 31


def check_compression(value: str) -> Compression:
    if value not in COMPRESSIONS:
        raise UsageError(f"Unknown compression {value!r}. Use one of: {', '.join(COMPRESSIONS)}.")
    return value


def detect(head: bytes) -> Compression:
    """Name the compression of a stream from its first bytes."""
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    # An uncompressed tar has "ustar" at offset 257 of its first header.
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "none"
    raise UnsupportedArchiveError(
        "This is not a checkpoint archive: it is neither zstd, gzip nor tar (checked by its "
        "first bytes). Check the URL points at a .tar.zst/.tar.gz/.tar written by ferry or by "
        "`podman container checkpoint --export`."
    )


@contextlib.contextmanager
def compressing(sink: BinaryIO, compression: Compression) -> Iterator[BinaryIO]:
    """A writable stream that compresses into ``sink``; the frame is finished on exit."""
    if compression == "zstd":
        params = zstandard.ZstdCompressionParameters.from_level(ZSTD_LEVEL, threads=-1, job_size=ZSTD_JOB_SIZE)
        cctx = zstandard.ZstdCompressor(compression_params=params)
        with cctx.stream_writer(sink, closefd=False) as writer:
            yield writer
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
            yield gz  # type: ignore[misc]
    else:
        yield sink


@contextlib.contextmanager
def decompressing(source: Readable) -> Iterator[tuple[Compression, BinaryIO]]:
    """Detect the compression of ``source`` and yield (name, decompressed readable stream)."""
    head = source.read(512)
    compression = detect(head)
    raw = io.BufferedReader(Prefixed(head, source), buffer_size=1 << 20)
    if compression == "zstd":
        dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        with dctx.stream_reader(raw, read_across_frames=True, closefd=False) as reader:
            yield compression, reader
    elif compression == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            yield compression, gz  # type: ignore[misc]
    else:
        yield compression, raw

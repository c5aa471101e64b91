"""Memory held by the streaming stages: large buffers go back to the system when freed.

glibc serves an allocation from ``mmap`` (and unmaps it on free) only above a threshold that
starts at 128 KiB and rises, after the first large free, up to 32 MiB. The streaming stages
allocate blocks of 1 to 8 MiB over and over, from several threads (zstd's workers, the hashing
thread, the store's read-ahead, fsspec's event loop): once the threshold has risen, each of those
blocks comes from a per-thread heap that keeps its high-water mark. Fixing the threshold at
1 MiB keeps the peak at what is live (measured with bench/rss.py: 226 -> 194 MiB for a 256 MiB
archive through S3; bench/bounds.md). Elsewhere than on glibc this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 1 << 20


@functools.cache
def release_large_buffers() -> bool:
    """Once per process: allocations of 1 MiB and more are mmapped; True if that took."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return False

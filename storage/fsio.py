"""fsspec plumbing every storage module shares: a URL's file system, storage errors translated
into ferry's (with the URL, never credentials), transfer sizes and byte callbacks."""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

# gcsfs's experimental hierarchical-namespace probing stalls ~60 s a call against GCS-compatible
# endpoints that do not serve it; ferry needs none of it. Must be set before gcsfs is imported
# (fsspec imports it for the first gs:// URL).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec
from fsspec.callbacks import Callback
from fsspec.implementations.local import LocalFileSystem

from ferry.errors import AccessDeniedError, ArchiveNotFoundError, FerryError, StoreError, UsageError

PARTIAL_SUFFIX = ".partial"
CHUNK = 8 << 20
BLOCK_SIZE = 8 << 20  # multipart part size: bounded memory, above S3's 5 MiB minimum


def filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[fsspec.AbstractFileSystem, str]:
    if not url:
        raise UsageError("No store URL given. Use e.g. file:///var/lib/ferry/store or s3://bucket/prefix.")
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except (ValueError, ImportError) as exc:
        raise UsageError(f"Cannot use store URL {url!r}: {exc}") from exc
    return fs, path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """A local file-system (temporary name and rename) rather than an object store."""
    return isinstance(fs, LocalFileSystem)


def url_for_path(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return str(fs.unstrip_protocol(path))


@contextlib.contextmanager
def translated(action: str, url: str, *, wraps_caller: bool = False) -> Iterator[None]:
    """Translate storage errors for ``url``. With ``wraps_caller`` (a context manager that
    yields to its caller), only ``OSError`` is translated: the caller's own exceptions pass."""
    try:
        yield
    except StoreError:
        raise
    except FileNotFoundError as exc:
        raise ArchiveNotFoundError(f"Cannot {action}: {url} does not exist.") from exc
    except PermissionError as exc:
        raise AccessDeniedError(
            f"Cannot {action} {url}: permission denied. Check the credentials and the bucket/directory permissions."
        ) from exc
    except OSError as exc:
        raise StoreError(f"Cannot {action} {url}: {exc}") from exc
    except FerryError:
        raise
    except Exception as exc:
        if wraps_caller:
            raise
        # Backends raise their own types too (gcsfs's HttpError, botocore's); at this boundary
        # any of them is a storage failure, reported with the URL and never with credentials.
        raise StoreError(f"Cannot {action} {url}: {type(exc).__name__}: {exc}") from exc


def bounded_get(fs: fsspec.AbstractFileSystem) -> dict[str, int]:
    """Concurrent ranged downloads, but a bounded number of bounded parts in memory at once
    (s3fs's defaults hold 10 parts of 50 MiB)."""
    params = inspect.signature(getattr(fs, "_get_file", fs.get_file)).parameters
    if "max_concurrency" in params and "chunksize" in params:
        return {"chunksize": BLOCK_SIZE, "max_concurrency": 4}
    return {}


class ByteCallback(Callback):  # type: ignore[misc]
    """fsspec's transfer callback, forwarding byte counts (for progress artifacts)."""

    def __init__(self, on_bytes: Callable[[int], None] | None) -> None:
        super().__init__()
        self._on_bytes = on_bytes

    def relative_update(self, inc: int = 1) -> None:
        super().relative_update(inc)
        if self._on_bytes:
            self._on_bytes(inc)


def copy_stream(src: BinaryIO, dst: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> None:
    """Copy ``src`` to ``dst`` in :data:`CHUNK` pieces; ``on_bytes`` hears each piece written."""
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        if on_bytes:
            on_bytes(len(chunk))

"""The archive store: checkpoint archives in any fsspec file-system, addressed by URL.

Layout under the store URL (one prefix per container, names sort by time)::

    <url>/<container>/<YYYYmmddTHHMMSSmmmZ>-<host>-<id12>.tar.zst          the archive
    <url>/<container>/<YYYYmmddTHHMMSSmmmZ>-<host>-<id12>.tar.zst.ferry.json  its sidecar

The sidecar (the manifest plus the archive's size and sha256) is written only after the
archive is completely committed: an archive without its sidecar is not complete, and neither
``ferry ls`` nor ``ferry restore`` accepts it. Errors come out as builtin ``OSError`` kinds
wrapped in :class:`ferry.errors.StoreError`, naming the URL.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from ferry.archive.manifest import Sidecar
from ferry.errors import (
    ArchiveNotFoundError,
    StoreError,
    UnsupportedArchiveError,
    UsageError,
)
from ferry.names import file_name
from storage.fsio import (
    BLOCK_SIZE,
    PARTIAL_SUFFIX,
    ByteCallback,
    copy_stream,
    filesystem,
    is_local,
    translated,
    url_for_path,
)
from storage.reading import SIDECAR_SUFFIX

#: Sidecars `listing` reads at once.
LISTING_THREADS = 16
ARCHIVE_SUFFIXES = (".tar.zst", ".tar.gz", ".tar")


@dataclass(frozen=True)
class Entry:
    """One complete archive in the store."""

    url: str
    sidecar: Sidecar


@dataclass(frozen=True)
class BrokenEntry:
    """A sidecar in the store that names no usable archive: it does not parse, or its archive
    is gone. Never skipped in silence: ``ferry ls`` shows it, ``restore --latest`` refuses it."""

    url: str  # the archive's URL (the sidecar's without its suffix)
    problem: str


class ArchiveStore:
    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = storage_options or {}
        self.fs, self.root = filesystem(self.url, self.storage_options)

    @property
    def is_local(self) -> bool:
        return is_local(self.fs)

    def key_for(self, container: str, created: str, host: str, container_id: str, suffix: str) -> str:
        # Milliseconds too: two snapshots of one container within a second must not share a key.
        stamp = "".join(c for c in created if c.isdigit() or c == "T")[:18] + "Z"
        safe_host = file_name(host, limit=253, keep="-_", fallback="host")
        return f"{container}/{stamp}-{safe_host}-{container_id[:12]}{suffix}"

    def url_of(self, key: str) -> str:
        return url_for_path(self.fs, posixpath.join(self.root, key))

    def check_writable(self) -> None:
        """Write and delete a small probe object, so a bad URL fails before a container stops."""
        probe = posixpath.join(self.root, f".ferry-probe-{uuid.uuid4().hex}")
        with translated("write to the store", self.url):
            if self.is_local:
                self.fs.makedirs(self.root, exist_ok=True)
            # Never makedirs on object stores: s3fs would create a missing bucket, and a
            # mistyped bucket name must fail here instead.
            self.fs.pipe_file(probe, b"ferry")
            self.fs.rm_file(probe)

    # -- writing ----------------------------------------------------------------------------

    def put_archive(
        self, local: Path, key: str, sidecar: Sidecar, on_bytes: Callable[[int], None] | None = None
    ) -> str:
        """Upload ``local`` as ``key`` then commit its sidecar; returns the archive URL."""
        url = self.url_of(key)
        if self.is_local:
            with self.open_archive_writer(key) as sink, local.open("rb") as src:
                copy_stream(src, sink, on_bytes)
        else:
            # Object stores publish an object only when its upload completes (single PUT, or
            # the final call of a multipart/resumable upload), and put_file sends large files'
            # parts in parallel and aborts the upload on error.
            with translated("upload the archive to", url):
                self.fs.put_file(str(local), posixpath.join(self.root, key), callback=ByteCallback(on_bytes))
        self.commit_sidecar(key, sidecar)
        return url

    @contextlib.contextmanager
    def open_archive_writer(self, key: str) -> Iterator[BinaryIO]:
        """A writable stream for an archive object that becomes visible only on success.

        Local file-systems get a temporary name in the same directory and a rename; object
        stores get an uncommitted upload (``autocommit=False``) that is discarded on error,
        because an exception inside a plain ``with fs.open(..., "wb")`` commits the partial
        object."""
        path = posixpath.join(self.root, key)
        url = self.url_of(key)
        with translated("write the archive", url, wraps_caller=True):
            if self.is_local:
                self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
                tmp = f"{path}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
                try:
                    with open(tmp, "wb") as f:  # noqa: PTH123 - local path from fsspec
                        yield f
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)  # noqa: PTH105 - fsspec paths are str
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)  # noqa: PTH108
                    raise
            else:
                with translated("start the upload of", url):
                    f = self.fs.open(path, "wb", autocommit=False, block_size=BLOCK_SIZE)
                try:
                    yield _StoreWriter(f, url)  # type: ignore[misc]
                    with translated("finish the upload of", url):
                        f.close()
                        f.commit()
                except BaseException:
                    with contextlib.suppress(Exception):
                        f.discard()
                    raise

    def discard(self, key: str) -> None:
        """Delete an archive object that was never published (no sidecar); gone already is fine."""
        path = posixpath.join(self.root, key)
        with translated("discard the unpublished archive", self.url_of(key)):
            if self.fs.exists(path):
                self.fs.rm_file(path)

    def check_object(self, key: str, size: int) -> None:
        """Refuse to publish an archive object that is not there, or not whole."""
        path = posixpath.join(self.root, key)
        with translated("check the archive", self.url_of(key)):
            info = self.fs.info(path)
        if int(info.get("size", -1)) != size:
            raise StoreError(
                f"The archive {self.url_of(key)} is {info.get('size')} bytes in the store, not {size}: it was "
                "changed or cut short after it was written. Take a new snapshot."
            )

    def commit_sidecar(self, key: str, sidecar: Sidecar) -> None:
        path = posixpath.join(self.root, key + SIDECAR_SUFFIX)
        with translated("write the sidecar manifest", self.url_of(key + SIDECAR_SUFFIX)):
            self.fs.pipe_file(path, sidecar.to_json())

    # -- reading ----------------------------------------------------------------------------

    def require(self) -> None:
        """Raise :class:`ArchiveNotFoundError` when there is no store here: a local directory that
        does not exist, or an object store's bucket that does not (a prefix with nothing under it
        is an empty store: object stores have no directories)."""
        try:
            with translated("read", self.url):
                # info, not exists: exists answers False for a store it cannot reach at all
                present = self.fs.isdir(self.root) if self.is_local else bool(self.fs.info(self.root.split("/")[0]))
        except ArchiveNotFoundError:
            present = False
        if not present:
            raise ArchiveNotFoundError(f"There is no store at {self.url}: check the URL.")

    def archives(self, container: str | None = None) -> list[Entry]:
        """Complete archives, newest first (per container when ``container`` is given)."""
        return self.listing(container)[0]

    def listing(self, container: str | None = None) -> tuple[list[Entry], list[BrokenEntry]]:
        """Complete archives, newest first, and the sidecars that name no usable archive,
        by URL (whose names sort by time, newest first)."""
        pattern = f"{container}/*{SIDECAR_SUFFIX}" if container else f"*/*{SIDECAR_SUFFIX}"
        with translated("list", self.url):
            paths = self.fs.glob(posixpath.join(self.root, pattern))
        entries = []
        broken = []
        # One round trip per sidecar (and one to check its archive): in parallel, so a store with
        # many archives lists in the time of a few round trips. map() keeps the order, and raises
        # the first failure in that order, as one loop would.
        if len(paths) > 1 and LISTING_THREADS > 1:
            with ThreadPoolExecutor(max_workers=min(LISTING_THREADS, len(paths))) as pool:
                read = list(pool.map(self._read_sidecar, paths))
        else:
            read = [self._read_sidecar(p) for p in paths]
        for path, (data, present) in zip(paths, read, strict=True):
            archive = path[: -len(SIDECAR_SUFFIX)]
            try:
                sidecar = Sidecar.from_json(data)
            except UnsupportedArchiveError as exc:
                broken.append(BrokenEntry(url_for_path(self.fs, archive), f"its sidecar cannot be read: {exc}"))
                continue
            if not present:
                broken.append(
                    BrokenEntry(url_for_path(self.fs, archive), "its sidecar is there but the archive is not")
                )
                continue
            entries.append(Entry(url_for_path(self.fs, archive), sidecar))
        entries.sort(key=lambda e: (e.sidecar.manifest.created, e.url), reverse=True)
        broken.sort(key=lambda b: b.url, reverse=True)
        return entries, broken

    def _read_sidecar(self, path: str) -> tuple[bytes, bool]:
        """A sidecar's bytes, and whether its archive is there."""
        with translated("read", url_for_path(self.fs, path)):
            return self.fs.cat_file(path), self.fs.exists(path[: -len(SIDECAR_SUFFIX)])

    def incomplete(self) -> list[str]:
        """What an interrupted upload may have left: archive objects without a sidecar,
        temporary ``.partial`` files, and (S3) multipart uploads never completed."""
        with translated("list", self.url):
            paths = self.fs.glob(posixpath.join(self.root, "*/*"))
        names = set(paths)
        found = [
            url_for_path(self.fs, p)
            for p in sorted(paths)
            if p.endswith(PARTIAL_SUFFIX) or (p.endswith(ARCHIVE_SUFFIXES) and p + SIDECAR_SUFFIX not in names)
        ]
        list_mpu = getattr(self.fs, "list_multipart_uploads", None)
        if list_mpu is not None:
            bucket = self.root.split("/", 1)[0]
            with translated("list multipart uploads in", self.url):
                uploads = list_mpu(bucket)
            prefix = self.root.split("/", 1)[1] + "/" if "/" in self.root else ""
            found += [
                f"{url_for_path(self.fs, bucket + '/' + u['Key'])} (multipart upload {u['UploadId'][:12]}...)"
                for u in uploads
                if u["Key"].startswith(prefix)
            ]
        return found

    def prune(
        self,
        *,
        keep: int | None = None,
        older_than: timedelta | None = None,
        container: str | None = None,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> list[Entry]:
        """Delete complete archives beyond the newest ``keep`` and/or older than ``older_than``,
        per container. The newest complete snapshot of a container is never deleted."""
        if keep is None and older_than is None:
            raise UsageError("Say what to prune: --keep N and/or --older-than DURATION.")
        if keep is not None and keep < 1:
            raise UsageError("--keep must be at least 1: ferry never deletes the newest snapshot.")
        cutoff = (now or datetime.now(UTC)) - older_than if older_than is not None else None
        by_container: dict[str, list[Entry]] = {}
        for entry in self.archives(container):
            by_container.setdefault(entry.sidecar.manifest.container.name, []).append(entry)
        doomed = []
        for entries in by_container.values():
            for index, entry in enumerate(entries):  # newest first
                if index == 0 or (keep is not None and index < keep):
                    continue
                if cutoff is not None and _created(entry) >= cutoff:
                    continue
                doomed.append(entry)
        if not dry_run:
            for entry in doomed:
                self.delete(entry.url)
        return doomed

    def delete(self, archive_url: str) -> None:
        """Sidecar first: the archive stops counting as complete before its bytes go."""
        _, path = filesystem(archive_url, self.storage_options)
        with translated("delete", archive_url):
            self.fs.rm_file(path + SIDECAR_SUFFIX)
            self.fs.rm_file(path)


class _StoreWriter:
    """The write side of an upload in progress: a failed part upload (any backend error) comes
    out as a :class:`StoreError` naming the URL, as everything else from the store does."""

    def __init__(self, f: Any, url: str) -> None:
        self._f, self._url = f, url

    def write(self, data: bytes | bytearray | memoryview) -> int:
        with translated("upload", self._url):
            return int(self._f.write(data))

    def flush(self) -> None:
        """Parts go out as they fill; nothing to force here."""


def _created(entry: Entry) -> datetime:
    return datetime.fromisoformat(entry.sidecar.manifest.created.replace("Z", "+00:00"))

"""The inspection's scanner: reads a copy of the archive stream and keeps only what it shows.

Small JSON members, member sizes, the rootfs diff's entry count, and the few CRIU images ferry
decodes (``pstree.img``, ``core-<pid>.img``, ``cpuinfo.img``, ``stats-dump``), copied into a
private directory under names ferry makes up; nothing else is ever written. One unreadable member
hides only itself: it becomes a note.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ferry.archive import members as m
from ferry.archive import safejson
from ferry.archive.compression import decompressing
from ferry.archive.manifest import Manifest
from ferry.archive.policy import confined, parse_deleted_files
from ferry.archive.reader import SMALL_MEMBER_LIMIT
from ferry.archive.streams import HashingReader, Readable, drain
from ferry.errors import ArchiveError, IntegrityError, UnsupportedArchiveError

#: CRIU images ferry copies out to decode; real ones are a few KiB.
IMAGE_LIMIT = 16 << 20
#: Each decoded process costs one crit run (~0.1 s); a tree larger than this is listed without names.
MAX_DECODED_PROCESSES = 128

_CORE_RE = re.compile(r"checkpoint/core-(\d{1,10})\.img")
_PAGES_RE = re.compile(r"checkpoint/pages-\d+\.img")


@dataclass
class Scan:
    """What the scanner thread saw. Only that thread writes it until it is joined."""

    work: Path
    limit: int
    compression: str = ""
    members: int = 0
    archive_bytes: int = 0
    total_bytes: int = 0
    memory_pages: int = 0
    rootfs_diff: int = 0
    changed_files: int = 0
    deleted_files: int = 0
    created_fallback: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None
    images: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: BaseException | None = None
    _seen: set[str] = field(default_factory=set)

    def run(self, reader: Readable) -> None:
        try:
            self._walk(reader)
        except Exception as exc:  # reported by the main thread once joined, see `finish`
            self.error = exc
        finally:
            drain(reader)  # never leave the other reader blocked on a full queue

    def finish(self) -> None:
        """After the scanner thread is joined: a stream it could not read at all is not an
        archive to show; one that broke halfway still shows what came before the break."""
        error = self.error
        if error is None:
            return
        if self.members == 0:
            if isinstance(error, ArchiveError):
                raise error
            raise IntegrityError(f"The archive cannot be read ({type(error).__name__}: {error}).") from error
        self.notes.append(f"Reading stopped after {self.members} members: {type(error).__name__}: {error}")

    def _walk(self, reader: Readable) -> None:
        with decompressing(reader) as (compression, plain):
            self.compression = compression
            bounded = HashingReader(plain, limit=self.limit, what="archive")
            tar = tarfile.open(fileobj=bounded, mode="r|")  # type: ignore[call-overload]
            for info in tar:
                self.members += 1
                self._member(tar, info)

    def _member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        try:
            name = confined(info.name, where="archive member")
        except ArchiveError as exc:
            self.notes.append(f"Skipped a member: {exc}")
            return
        if not info.isreg():
            return
        if name in self._seen:
            self.notes.append(f"Member {name!r} appears twice; only the first is shown.")
            return
        self._seen.add(name)
        self.total_bytes += info.size
        data = tar.extractfile(info)
        if data is None:
            return
        try:
            self._payload(name, info, data)
        except (ArchiveError, ValueError, OSError, tarfile.TarError) as exc:
            # One unreadable member (bad JSON, a hostile diff entry) hides only itself.
            self.notes.append(f"Cannot read {name}: {exc}")

    def _payload(self, name: str, info: tarfile.TarInfo, data: Readable) -> None:
        if _PAGES_RE.fullmatch(name):
            self.memory_pages += info.size
        elif name == m.INVENTORY:
            self.created_fallback = datetime.fromtimestamp(info.mtime, UTC).isoformat().replace("+00:00", "Z")
        elif name == m.ROOTFS_DIFF:
            self.rootfs_diff = info.size
            self.changed_files = _count_diff_entries(data)
        elif name == m.DELETED_FILES:
            self.deleted_files = len(parse_deleted_files(_small(data, name)))
        elif name == m.CONFIG_DUMP:
            self.config = _json_object(_small(data, name), name)
        elif name == m.SPEC_DUMP:
            self.spec = _json_object(_small(data, name), name)
        elif name == m.MANIFEST:
            self.manifest = Manifest.from_json(_small(data, name))
        else:
            self._keep_image(name, info, data)

    def _keep_image(self, name: str, info: tarfile.TarInfo, data: Readable) -> None:
        """Copy one of the CRIU images ferry decodes into the work directory, under a name
        ferry builds itself (never the archive's)."""
        core = _CORE_RE.fullmatch(name)
        if core:
            if sum(1 for k in self.images if k.startswith("core-")) >= MAX_DECODED_PROCESSES:
                return
            local = f"core-{int(core.group(1))}.img"
        elif name in (m.PSTREE, m.CPUINFO, m.STATS_DUMP):
            local = name.rsplit("/", 1)[-1]
        else:
            return
        if info.size > IMAGE_LIMIT:
            self.notes.append(f"{name} is {info.size} bytes, more than a CRIU image of its kind holds; not decoded.")
            return
        # cpuinfo.img gets a directory of its own: `criu cpuinfo check -D` reads that directory.
        folder = self.work / ("cpu" if name == m.CPUINFO else "images")
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / local
        with path.open("xb") as out:
            out.write(_small(data, name, IMAGE_LIMIT))
        self.images[local] = path


def _count_diff_entries(data: Readable) -> int:
    """Entries a restore would create: files, hardlinks, symlinks and directories."""
    count = 0
    inner = tarfile.open(fileobj=data, mode="r|")  # type: ignore[call-overload]
    try:
        for entry in inner:
            if entry.isreg() or entry.islnk() or entry.issym() or entry.isdir():
                count += 1 if confined(entry.name, where="rootfs-diff.tar") else 0
    except tarfile.ReadError as exc:
        if "empty file" not in str(exc):
            raise
    return count


def _small(data: Readable, name: str, limit: int = SMALL_MEMBER_LIMIT) -> bytes:
    raw = data.read(limit + 1)
    if len(raw) > limit:
        raise ArchiveError(f"member {name!r} is larger than {limit} bytes")
    return raw


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    value = safejson.loads(raw, what=name, max_bytes=4 << 20, max_depth=32)
    if not isinstance(value, dict):
        raise UnsupportedArchiveError(f"{name} is not a JSON object.")
    return value

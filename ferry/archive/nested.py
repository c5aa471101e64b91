"""Tars inside the archive: checked entry by entry and rebuilt, so no tool reads their bytes.

A checkpoint archive carries tars that root unpacks on the restoring host: ``rootfs-diff.tar``
(into the container root), ``devshm-checkpoint.tar`` (into the container's /dev/shm),
``volumes/<name>.tar`` (into a new named volume) and CRIU's ``checkpoint/tmpfs-dev-*.tar.gz.img``
(gzip; CRIU runs ``tar --extract`` into each tmpfs mount). Podman's untar and GNU tar both follow
symlinks that an earlier entry created, so each of them gets the same rules:

* paths are relative, without ``..`` or NUL, and each path occurs once (so a directory cannot be
  replaced by a symlink of the same name); only a directory may stand for the tar's root;
* no entry lies below or through a symlink the same tar created, and no entry replaces a
  directory that earlier entries were written into;
* regular files, directories, symlinks, and hardlinks to an earlier regular file of the same tar
  whose path does not pass through a symlink; no device nodes (except, in CRIU's ``/dev`` tmpfs,
  the six an OCI runtime creates itself: null, zero, full, random, urandom, tty), FIFOs,
  sockets, GNU sparse or contiguous entries, or any other type. One exception: CRIU dumps tmpfs
  contents with ``tar --sparse``, so in its images a sparse file is written out in full as a
  regular file (at most ``SPARSE_LIMIT`` bytes of them per tar);
* no setuid/setgid files; at most ``max_entries`` entries and ``max_bytes`` bytes of file data.

A tar that passes is written anew by ferry from the parsed entries (numeric owners, no extended
attributes, no set-id bits), so Podman and CRIU only ever parse ferry's own output.
"""

from __future__ import annotations

import gzip
import posixpath
import re
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ferry.archive import members as m
from ferry.archive.policy import confined, entry_kind
from ferry.archive.streams import NESTED_TAR_BUFFER, HashingReader, Readable, tar_stream
from ferry.errors import IntegrityError, UnsafeArchiveError

SETID = stat.S_ISUID | stat.S_ISGID
MAX_ENTRIES = 1 << 20
#: Character devices an OCI runtime puts in every container's /dev, as (major, minor).
RUNTIME_DEVICES = frozenset({(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)})
#: Podman's volume names (libpod/define NameRegex).
VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
TMPFS_IMAGE = re.compile(r"checkpoint/tmpfs-(dev-)?[0-9]+\.tar\.gz\.img")
#: Sparse files of a CRIU tmpfs image are written out in full: at most this many bytes per tar.
SPARSE_LIMIT = 256 << 20
#: deflate expands at most ~1032:1; a gzip member may not claim more than that.
GZIP_MAX_RATIO = 1100


@dataclass(frozen=True)
class Kind:
    """What one nested tar is and how it is stored."""

    where: str
    gzip: bool = False
    devices: frozenset[tuple[int, int]] = frozenset()
    keep_root: bool = True  # write the tar's own "." entry (mode and owner of the target dir)
    densify_sparse: bool = False  # rebuild GNU sparse files as regular files instead of refusing


def kind_of(name: str) -> Kind | None:
    """The nested tar a member name stands for, or None; refuses malformed volume names."""
    if name == m.ROOTFS_DIFF:
        return Kind(name, keep_root=False)
    if name == m.DEVSHM:
        return Kind(name)
    if TMPFS_IMAGE.fullmatch(name):
        return Kind(name, gzip=True, devices=RUNTIME_DEVICES, densify_sparse=True)
    head, base = posixpath.split(name)
    if head == m.VOLUMES_DIR:
        volume = base.removesuffix(".tar")
        if not base.endswith(".tar") or not VOLUME_NAME.fullmatch(volume):
            raise UnsafeArchiveError(
                f"archive member {name!r}: members under volumes/ must be <volume name>.tar, with a "
                "name Podman accepts ([a-zA-Z0-9][a-zA-Z0-9_.-]*)."
            )
        return Kind(name)
    if head.startswith(m.VOLUMES_DIR + "/"):
        raise UnsafeArchiveError(f"archive member {name!r}: volumes/ holds no subdirectories.")
    return None


def volume_name(name: str) -> str | None:
    """``volumes/<name>.tar`` -> ``<name>`` (for cross-checking with config.dump)."""
    head, base = posixpath.split(name)
    return base.removesuffix(".tar") if head == m.VOLUMES_DIR else None


class TarChecker:
    """Checks the entries of one nested tar in order, remembering what earlier entries made."""

    def __init__(
        self,
        where: str,
        *,
        devices: frozenset[tuple[int, int]] = frozenset(),
        densify_sparse: bool = False,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int | None = None,
    ) -> None:
        self.where = where
        self._devices = devices
        self._densify = densify_sparse
        self.sparse_bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._seen: set[str] = set()
        self._parents: set[str] = set()
        self._symlinks: set[str] = set()
        self._files: set[str] = set()
        self.entries = 0
        self.files = 0
        self.bytes = 0

    def check(self, info: tarfile.TarInfo) -> str:
        """Check one entry; returns its normalised name ("" for the tar's root directory)."""
        where = self.where
        self.entries += 1
        if self.entries > self._max_entries:
            raise UnsafeArchiveError(f"{where} holds more than {self._max_entries} entries; refusing it.")
        name = confined(info.name, where=where)
        kind = entry_kind(info)
        shown = name or "."
        if name in self._seen:
            raise UnsafeArchiveError(
                f"{where}: {shown!r} occurs twice; a later entry would replace what the first one made."
            )
        if not name and not info.isdir():
            raise UnsafeArchiveError(f"{where}: a {kind} entry has an empty name.")
        self._refuse_through_link(name)
        self._check_type(info, shown, kind)
        if info.mode & SETID and not info.isdir():
            raise UnsafeArchiveError(
                f"{where}: {shown!r} has the setuid/setgid bit; ferry refuses to install set-id files from an archive."
            )
        if name in self._parents and not info.isdir():
            raise UnsafeArchiveError(
                f"{where}: {shown!r} is a {kind} in place of a directory that earlier entries were written "
                "into; later entries could reach outside through it."
            )
        if info.islnk():
            self._check_hardlink(info, shown)
        self._record(name, info)
        return name

    def _check_type(self, info: tarfile.TarInfo, shown: str, kind: str) -> None:
        where = self.where
        if info.issparse() or info.type == tarfile.GNUTYPE_SPARSE:
            if not self._densify:
                raise UnsafeArchiveError(
                    f"{where}: {shown!r} is a GNU sparse file; ferry does not restore sparse entries."
                )
            self.sparse_bytes += info.size
            if self.sparse_bytes > SPARSE_LIMIT:
                raise UnsafeArchiveError(
                    f"{where} holds sparse files of more than {SPARSE_LIMIT} bytes in all; ferry writes them "
                    "out in full and refuses more."
                )
            return
        if info.type == tarfile.CONTTYPE:
            raise UnsafeArchiveError(f"{where}: {shown!r} is a contiguous-file entry; ferry does not restore those.")
        if info.ischr() and (info.devmajor, info.devminor) in self._devices:
            return
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE):
            raise UnsafeArchiveError(
                f"{where}: {shown!r} is a {kind}; device nodes, FIFOs and sockets are never restored from an archive."
            )

    def _check_hardlink(self, info: tarfile.TarInfo, shown: str) -> None:
        where = self.where
        target = confined(info.linkname, where=f"{where} hardlink {shown!r}")
        self._refuse_through_link(target, what=f"hardlink {shown!r} to {target!r}")
        if target not in self._files:
            raise UnsafeArchiveError(
                f"{where}: hardlink {shown!r} points at {info.linkname!r}, which is not a regular file earlier "
                "in the same tar."
            )

    def _record(self, name: str, info: tarfile.TarInfo) -> None:
        self._seen.add(name)
        parent = posixpath.dirname(name)
        while parent and parent not in self._parents:
            self._parents.add(parent)
            parent = posixpath.dirname(parent)
        if info.issym():
            self._symlinks.add(name)
        elif info.isreg() or info.islnk():
            self._files.add(name)
            self.files += 1
            self.bytes += info.size if info.isreg() else 0
            if self._max_bytes is not None and self.bytes > self._max_bytes:
                raise UnsafeArchiveError(f"{self.where} holds more than {self._max_bytes} bytes of files; refusing it.")

    def _refuse_through_link(self, name: str, *, what: str = "") -> None:
        parent = posixpath.dirname(name)
        while parent:
            if parent in self._symlinks:
                raise UnsafeArchiveError(
                    f"{self.where}: {what or repr(name)} would go through the symlink {parent!r} "
                    "created earlier in the same tar."
                )
            parent = posixpath.dirname(parent)

    @property
    def symlinks(self) -> frozenset[str]:
        return frozenset(self._symlinks)


def rebuild(
    source: Readable,
    kind: Kind,
    sink: BinaryIO | None,
    *,
    checker: TarChecker | None = None,
    compressed_size: int = 0,
    on_entry: Callable[[str], None] | None = None,
) -> TarChecker:
    """Check every entry of the tar in ``source`` and, with a ``sink``, write a clean copy to it.

    Refusals raise :class:`UnsafeArchiveError`; a tar that cannot be parsed raises
    :class:`IntegrityError` naming the member.
    """
    checker = checker or TarChecker(kind.where, devices=kind.devices, densify_sparse=kind.densify_sparse)
    try:
        if kind.gzip:
            limit = GZIP_MAX_RATIO * compressed_size + (1 << 20)
            with gzip.GzipFile(fileobj=source, mode="rb") as plain:  # type: ignore[call-overload]
                bounded = HashingReader(plain, limit=limit, what=kind.where, digest=False)
                if sink is None:
                    _copy_entries(bounded, kind, checker, None, on_entry)
                else:
                    with gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) as packed:
                        _copy_entries(bounded, kind, checker, packed, on_entry)  # type: ignore[arg-type]
        else:
            _copy_entries(source, kind, checker, sink, on_entry)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise IntegrityError(
            f"{kind.where} is truncated or corrupt ({type(exc).__name__}: {exc}); refusing the archive."
        ) from exc
    return checker


def _copy_entries(
    source: Readable,
    kind: Kind,
    checker: TarChecker,
    sink: BinaryIO | None,
    on_entry: Callable[[str], None] | None,
) -> None:
    inner = tar_stream(source, "r|", NESTED_TAR_BUFFER)
    out = tar_stream(sink, "w|", NESTED_TAR_BUFFER) if sink is not None else None
    try:
        for entry in _entries(inner):
            name = checker.check(entry)
            if name and on_entry is not None:
                on_entry(name)
            if out is None or (not name and not kind.keep_root):
                continue
            clean = clean_entry(entry, name or ".")
            if entry.islnk():
                clean.linkname = confined(entry.linkname, where=f"{kind.where} hardlink")
            out.addfile(clean, inner.extractfile(entry) if entry.isreg() else None)
    finally:
        if out is not None:
            out.close()


def _entries(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    try:
        yield from tar
    except tarfile.ReadError as exc:
        if "empty file" in str(exc):
            return
        raise


def clean_entry(info: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    """A fresh header with only what a checked entry needs: no set-id bits, names or xattrs."""
    clean = tarfile.TarInfo(name)
    clean.type = tarfile.REGTYPE if info.type in (tarfile.AREGTYPE, tarfile.GNUTYPE_SPARSE) else info.type
    clean.mode = info.mode & 0o1777
    clean.uid, clean.gid = info.uid, info.gid
    clean.mtime = info.mtime
    clean.size = info.size if info.isreg() else 0
    clean.linkname = info.linkname if info.issym() else ""
    if info.ischr():
        clean.devmajor, clean.devminor = info.devmajor, info.devminor
    return clean

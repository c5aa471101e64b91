"""Which names and entry types an untrusted archive may contain.

Archives come from a bucket that someone else may be able to write to, and ferry restores as
root. Every path is checked here, lexically, before anything touches the host:

* outer members: relative, no ``..``, regular files and directories only;
* rootfs diff entries: relative to the container root, no ``..``, regular files, directories,
  symlinks and hardlinks to earlier entries only; no device nodes, FIFOs or sockets; no
  setuid/setgid bits; no entry below a symlink the diff itself created (the write would follow
  the link);
* ``deleted.files``: a JSON list of strings, each a container-absolute path without ``..``,
  never the root itself.

Symlink targets may be absolute: inside a container ``/etc`` means the container's ``/etc``.
What matters is that no later write goes *through* a link, which the apply stage also checks
against the image's own links.
"""

from __future__ import annotations

import posixpath
import stat
import tarfile

from ferry.archive import safejson
from ferry.errors import UnsafeArchiveError

SETID = stat.S_ISUID | stat.S_ISGID


def confined(name: str, *, where: str) -> str:
    """Normalise a relative archive path, refusing anything that could leave its root."""
    if "\x00" in name:
        raise UnsafeArchiveError(f"{where}: the path {name!r} contains a NUL byte.")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"{where}: the path {name!r} is absolute; archive paths must be relative.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError(f"{where}: the path {name!r} contains '..'.")
    return "/".join(parts)


def container_path(entry: object, *, where: str) -> str:
    """Check one ``deleted.files`` entry; return it relative to the container root."""
    if not isinstance(entry, str):
        raise UnsafeArchiveError(f"{where}: entry {entry!r} is not a string.")
    rel = confined(entry.lstrip("/"), where=where)
    if not rel:
        raise UnsafeArchiveError(f"{where}: entry {entry!r} names the container root itself.")
    return rel


def parse_deleted_files(data: bytes) -> list[str]:
    """Parse and check ``deleted.files``; returns paths relative to the container root."""
    where = "deleted.files"
    entries = safejson.loads(data, what=where, max_bytes=64 << 20, max_depth=2)
    if not isinstance(entries, list):
        raise UnsafeArchiveError(f"{where} must be a JSON list of paths, not {type(entries).__name__}.")
    return [container_path(e, where=where) for e in entries]


def check_outer_member(info: tarfile.TarInfo) -> str:
    """Check a member of the outer archive; returns its normalised name."""
    where = "archive member"
    name = confined(info.name, where=where)
    if not name:
        if info.isdir():
            return name
        raise UnsafeArchiveError(f"{where}: a {_kind(info)} entry has an empty name.")
    if not (info.isreg() or info.isdir()):
        raise UnsafeArchiveError(
            f"{where} {name!r} is a {_kind(info)}; a checkpoint archive holds only files and "
            "directories at its top level."
        )
    return name


class DiffChecker:
    """Checks the entries of ``rootfs-diff.tar`` one by one, remembering links it has seen."""

    def __init__(self) -> None:
        self._symlinks: set[str] = set()
        self._files: set[str] = set()
        self.files = 0
        self.bytes = 0

    def check(self, info: tarfile.TarInfo) -> str:
        where = "rootfs-diff.tar"
        name = confined(info.name, where=where)
        if not name:
            if info.isdir():
                return name
            raise UnsafeArchiveError(f"{where}: a {_kind(info)} entry has an empty name.")
        self._refuse_through_link(name, where)
        if (
            info.ischr()
            or info.isblk()
            or info.isfifo()
            or not (info.isreg() or info.isdir() or info.issym() or info.islnk())
        ):
            raise UnsafeArchiveError(
                f"{where}: {name!r} is a {_kind(info)}; device nodes, FIFOs and sockets are never "
                "restored from an archive."
            )
        if info.mode & SETID and not info.isdir():
            raise UnsafeArchiveError(
                f"{where}: {name!r} has the setuid/setgid bit; ferry refuses to install set-id files from an archive."
            )
        if info.islnk():
            target = confined(info.linkname, where=f"{where} hardlink {name!r}")
            if target not in self._files:
                raise UnsafeArchiveError(
                    f"{where}: hardlink {name!r} points at {info.linkname!r}, which is not a file earlier in the diff."
                )
        if info.issym():
            self._symlinks.add(name)
        elif info.isreg() or info.islnk():
            self._files.add(name)
            self.files += 1
            self.bytes += info.size
        if not info.issym():
            self._symlinks.discard(name)
        if not (info.isreg() or info.islnk()):
            self._files.discard(name)  # a later hardlink to this name would not link to a file
        return name

    def _refuse_through_link(self, name: str, where: str) -> None:
        parent = posixpath.dirname(name)
        while parent:
            if parent in self._symlinks:
                raise UnsafeArchiveError(
                    f"{where}: {name!r} would be written through the symlink {parent!r} "
                    "created earlier in the same diff."
                )
            parent = posixpath.dirname(parent)

    @property
    def symlinks(self) -> frozenset[str]:
        return frozenset(self._symlinks)


def check_deleted_below_links(path: str, symlinks: frozenset[str]) -> None:
    """Podman removes ``deleted.files`` after applying the diff: never through a link it made."""
    parent = posixpath.dirname(path)
    while parent:
        if parent in symlinks:
            raise UnsafeArchiveError(
                f"deleted.files: {'/' + path!r} lies below the symlink {parent!r} created by the rootfs "
                "diff; removing it would follow the link."
            )
        parent = posixpath.dirname(parent)


def _kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return "symlink"
    if info.islnk():
        return "hardlink"
    if info.ischr():
        return "character device"
    if info.isblk():
        return "block device"
    if info.isfifo():
        return "FIFO"
    if info.isdir():
        return "directory"
    if info.isreg():
        return "regular file"
    return f"special entry (type {info.type!r})"

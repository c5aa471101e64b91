"""Rootfs diff: changed files of the container's root into ``rootfs-diff.tar``.

Same semantics as Podman's export: every added path and every modified non-directory goes into
an uncompressed tar with paths relative to the container root; deleted paths go into
``deleted.files`` as a JSON list of container-absolute paths. Both are written only when
non-empty. Runs while the container is frozen, so the files match the memory dump.

Files are opened component by component with ``O_NOFOLLOW``: a container that turned one of
its directories into a symlink to ``/`` cannot make ferry read the host's files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from ferry import progress
from ferry.archive.members import DELETED_FILES, ROOTFS_DIFF
from ferry.runtime import ContainerInfo, Runtime, current

log = logging.getLogger("ferry.rootfs_diff")


@dataclass(frozen=True)
class DiffResult:
    tar: Path | None  # None when nothing was added or changed
    deleted: Path | None  # None when nothing was deleted
    files: int
    bytes: int
    deleted_count: int
    skipped: tuple[str, ...] = ()


@contextlib.contextmanager
def open_beneath(root_fd: int, rel: str) -> Iterator[int]:
    """An O_PATH-free ``openat`` walk: every component opened with O_NOFOLLOW under root."""
    parts = [p for p in rel.split("/") if p]
    fds: list[int] = []
    try:
        fd = root_fd
        for part in parts[:-1]:
            fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            fds.append(fd)
        yield fd
    finally:
        for opened in fds:
            os.close(opened)


def _entry(root_fd: int, rel: str, tar: tarfile.TarFile, stage: progress.Stage | None = None) -> int:
    """Add one path to the tar; returns its size in bytes. Raises OSError to skip it."""
    name = rel.strip("/")
    leaf = name.rsplit("/", 1)[-1]
    with open_beneath(root_fd, name) as parent:
        st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(leaf, dir_fd=parent)
            tar.addfile(info)
            return 0
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            return 0
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{rel} is a device node, FIFO or socket; not captured")
        fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent)
        with os.fdopen(fd, "rb") as f:
            info.size = os.fstat(fd).st_size
            tar.addfile(info, stage.reader(f) if stage is not None else f)
        return info.size


def rootfs_diff(info: ContainerInfo, staging: Path, runtime: Runtime | None = None) -> DiffResult:
    runtime = runtime or current()
    changes = runtime.diff(info.id)
    deleted = sorted(set(changes.deleted))
    deleted_path = None
    if deleted:
        deleted_path = staging / DELETED_FILES
        deleted_path.write_text(json.dumps(deleted))
    tar_path = staging / ROOTFS_DIFF
    files = size = 0
    skipped: list[str] = []
    with progress.stage("rootfs-diff", info.name, streams=True) as stage, runtime.mounted(info.id) as root:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            wanted = set(changes.added)
            for path in changes.changed:
                with contextlib.suppress(OSError), open_beneath(root_fd, path) as parent:
                    leaf = path.strip("/").rsplit("/", 1)[-1]
                    if not stat.S_ISDIR(os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mode):
                        wanted.add(path)
            with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
                for path in sorted(wanted):
                    try:
                        size += _entry(root_fd, path, tar, stage)
                        files += 1
                    except OSError as exc:
                        skipped.append(path)
                        log.warning("rootfs diff of %s: skipping %s (%s)", info.name, path, exc)
        finally:
            os.close(root_fd)
    if not files:
        tar_path.unlink()
        return DiffResult(None, deleted_path, 0, 0, len(deleted), tuple(skipped))
    return DiffResult(tar_path, deleted_path, files, size, len(deleted), tuple(skipped))


@task(name="rootfs-diff", retries=0, persist_result=True)
def rootfs_diff_task(info: ContainerInfo, staging: Path, generation: int = 0) -> DiffResult:
    return rootfs_diff(info, staging)

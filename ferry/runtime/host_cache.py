"""What this host's Podman reports about itself, cached on disk between runs.

``podman info`` takes 0.3 to 1 s and the reference container (``Podman.reference_spec``: create,
init, inspect, rm) about as much again; neither answer changes until Podman, its OCI runtime or
their configuration does. Each answer is stored under ``<staging>/cache/`` with a fingerprint of
what it depends on, computed without running Podman: the podman command line, the user, the boot
(a reboot can change cgroups, AppArmor or seccomp support), the environment variables Podman reads
its configuration from, and the identity (device, inode, size, mtime) of the podman, runc, crun
and conmon binaries and of every containers.conf, storage.conf and seccomp profile Podman reads.
An upgrade or an edit of any of them changes the fingerprint, and the answer is computed afresh.

The reference spec is the yardstick a restore rebuilds an archive's spec against, so the cache
is trusted only when it is this user's own: a directory and files owned by the effective user,
writable by no one else. Anything else (foreign, unreadable, corrupt) is ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferry.staging import staging_root

FORMAT = 1
MAX_AGE_S = 7 * 24 * 3600  # entries of other fingerprints older than this are removed on write

_CONFIG_FILES = (
    "/usr/share/containers/containers.conf",
    "/etc/containers/containers.conf",
    "/usr/share/containers/storage.conf",
    "/etc/containers/storage.conf",
    "/usr/share/containers/seccomp.json",
    "/etc/containers/seccomp.json",
    "/usr/share/containers/mounts.conf",
    "/etc/containers/mounts.conf",
)
_CONFIG_DIRS = ("/usr/share/containers/containers.conf.d", "/etc/containers/containers.conf.d")
_BINARIES = ("podman", "runc", "crun", "conmon")
_LIBEXEC = ("/usr/libexec/podman/conmon", "/usr/bin/conmon", "/usr/sbin/runc", "/usr/bin/runc")
_ENV = (
    "CONTAINERS_CONF",
    "CONTAINERS_CONF_OVERRIDE",
    "CONTAINERS_STORAGE_CONF",
    "XDG_CONFIG_HOME",
    "XDG_RUNTIME_DIR",
    "HOME",
    "PATH",
)


def _identity(path: str | Path) -> list[int | str]:
    try:
        st = Path(path).stat()
    except OSError:
        return [str(path), "absent"]
    return [str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def fingerprint(prefix: list[str]) -> str:
    """What Podman's self-description depends on, hashed (no subprocess)."""
    files: list[str | Path] = list(_CONFIG_FILES)
    for folder in _CONFIG_DIRS:
        with contextlib.suppress(OSError):
            files += sorted(Path(folder).iterdir())
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path(os.environ.get("HOME", "/")) / ".config")
    files += [home / "containers" / n for n in ("containers.conf", "storage.conf")]
    files += [os.environ[v] for v in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF") if os.environ.get(v)]
    binaries = [shutil.which(prefix[0]) if prefix else None, *(shutil.which(b) for b in _BINARIES), *_LIBEXEC]
    record = {
        "format": FORMAT,
        "prefix": prefix,
        "euid": os.geteuid(),
        "boot": _boot_id(),
        "env": {v: os.environ.get(v) for v in _ENV},
        "files": [_identity(f) for f in files],
        "binaries": [_identity(b) for b in binaries if b],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path:
    return staging_root() / "cache"


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _load(path: Path, fp: str) -> Any:
    try:
        if not _trusted(path.parent.stat()):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not _trusted(os.fstat(f.fileno())):
                return None
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("fingerprint") != fp or "value" not in entry:
        return None
    return entry["value"]


def _save(folder: Path, kind: str, fp: str, value: Any) -> None:
    try:
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        if not _trusted(folder.stat()):
            return
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{kind}-")
        with os.fdopen(fd, "w") as f:
            json.dump({"fingerprint": fp, "value": value}, f)
        Path(tmp).replace(folder / f"{kind}-{fp[:32]}.json")
        now = time.time()
        for old in folder.glob(f"{kind}-*.json"):
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > MAX_AGE_S:
                    old.unlink()
    except OSError:
        return  # a cache that cannot be written is only slower


def cached(kind: str, prefix: list[str], compute: Callable[[], Any]) -> Any:
    """``compute()``'s answer for this Podman as it is now: from disk, or computed (and stored).
    ``compute`` must return JSON-serialisable data; errors it raises propagate, nothing stored."""
    fp = fingerprint(prefix)
    folder = cache_dir()
    value = _load(folder / f"{kind}-{fp[:32]}.json", fp)
    if value is None:
        value = compute()
        _save(folder, kind, fp, value)
    return value

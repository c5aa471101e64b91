"""Service images built locally from Debian's packages with debootstrap, cached as rootfs tars.

A recipe (suite and packages) is built once per machine: `debootstrap --variant=minbase
--include=...`, documentation, locales and apt's lists dropped, tarred, then renamed into
`$FERRY_TEST_IMAGE_CACHE/<name>-<hash of the recipe>.tar` (default /var/cache/ferry-test/images).
A lock file serialises concurrent builds of one recipe; a half-built tar is never visible under
its final name. `FERRY_TEST_IMAGE_CACHE=session` builds into the session's temporary directory."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_CACHE = "/var/cache/ferry-test/images"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Bump when the build steps below change: the hash of every recipe changes with it.
BUILD_VERSION = 1
# Dropped after debootstrap: nothing a service needs at run time.
SHRINK = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
)


@dataclass(frozen=True)
class Recipe:
    name: str
    packages: tuple[str, ...]
    suite: str = "bookworm"

    @property
    def digest(self) -> str:
        text = json.dumps({"suite": self.suite, "packages": sorted(self.packages), "build": BUILD_VERSION})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def image(self) -> str:
        return f"localhost/ferry-{self.name}:{self.digest}"


REDIS = Recipe("redis", ("redis-server", "redis-tools"))
MARIADB = Recipe("mariadb", ("mariadb-server", "mariadb-client"))


def cache_dir(session_tmp: Path) -> Path:
    value = os.environ.get("FERRY_TEST_IMAGE_CACHE", DEFAULT_CACHE)
    return session_tmp if value == "session" else Path(value)


def debootstrap() -> str | None:
    return shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.access(p, os.X_OK)), None
    )


@dataclass(frozen=True)
class Built:
    tar: Path
    seconds: float  # 0 when it came from the cache
    size: int


def rootfs_tar(recipe: Recipe, cache: Path) -> Built:
    """The recipe's rootfs tar, from the cache or built now (once, whoever asks at the same time)."""
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"{recipe.name}-{recipe.digest}.tar"
    if final.exists():
        return Built(final, 0.0, final.stat().st_size)
    with (cache / f".{recipe.name}-{recipe.digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.exists():  # built by someone else while we waited
            return Built(final, 0.0, final.stat().st_size)
        started = time.monotonic()
        _build(recipe, final)
        seconds = time.monotonic() - started
    for stale in cache.glob(f"{recipe.name}-*.tar"):
        if stale != final:
            stale.unlink(missing_ok=True)
    return Built(final, seconds, final.stat().st_size)


def _build(recipe: Recipe, final: Path) -> None:
    tool = debootstrap()
    if tool is None:
        raise RuntimeError("debootstrap is not installed (FERRY_SETUP_TESTS=1 scripts/setup-host installs it)")
    work = Path(tempfile.mkdtemp(prefix=f".{recipe.name}-build-", dir=final.parent))
    try:
        root = work / "root"
        mirror = os.environ.get("FERRY_TEST_DEBIAN_MIRROR", DEFAULT_MIRROR)
        cmd = [tool, "--variant=minbase", f"--include={','.join(recipe.packages)}", recipe.suite, str(root), mirror]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
        if proc.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}{tail}")
        for rel in SHRINK:
            path = root / rel
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
        for log_file in (root / "var" / "log").rglob("*"):
            if log_file.is_file():
                log_file.unlink()
        partial = work / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."],
            capture_output=True,
            text=True,
            check=True,
        )
        os.replace(partial, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


IMAGE_REPORT: list[str] = []  # printed in the session's summary (tests/conftest.py)


class ServiceImages:
    """The rootfs tars a session uses: each recipe built (or found in the cache) once."""

    def __init__(self, session_tmp: Path) -> None:
        self.cache = cache_dir(session_tmp)
        self._tars: dict[Recipe, Path] = {}

    def tar(self, recipe: Recipe) -> Path:
        if recipe not in self._tars:
            if debootstrap() is None:
                pytest.fail(
                    "this test needs debootstrap; run .ci/run (or FERRY_SETUP_TESTS=1 scripts/setup-host)",
                    pytrace=False,
                )
            built = rootfs_tar(recipe, self.cache)
            how = f"built in {built.seconds:.0f} s" if built.seconds else "from the cache"
            IMAGE_REPORT.append(f"{recipe.name}: {built.tar} ({built.size / 2**20:.0f} MiB, {how})")
            self._tars[recipe] = built.tar
        return self._tars[recipe]

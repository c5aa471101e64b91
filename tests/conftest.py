"""Shared fixtures. Tests that need podman/CRIU fail loudly when those are missing: a missing
CRIU is a broken test machine, never a skip."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.keygen import KeyPair, keygen

# Before anything imports gcsfs: it reads this once (see tests/gcs_server.py).
from tests.gcs_server import gcs_emulator, gcs_storage_options
from tests.helpers import IMAGE, Host, build_rootfs_tar
from tests.images import IMAGE_REPORT, ServiceImages
from tests.servers import S3Server, moto_server

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Every `ferry` a test starts runs in its own process, as some patch ferry before calling main;
# tests/e2e/test_resident.py turns the resident process on for its own commands.
os.environ["FERRY_RESIDENT"] = "off"


def _require(ok: bool, what: str) -> None:
    if not ok:
        pytest.fail(f"this test needs {what}; run .ci/run (or scripts/setup-host) to install it", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyPair]:
    """Signatures are on by default: the session signs its snapshots with a key of its own and
    trusts it. Set in os.environ, so CLI subprocesses and Prefect workers started by tests inherit it."""
    pair = keygen(tmp_path_factory.mktemp("keys") / "session", "ferry@tests")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERRY_SIGNING_KEY", str(pair.private))
        mp.setenv("FERRY_TRUSTED_KEYS", str(pair.public))
        yield pair


@pytest.fixture(scope="session")
def real_criu() -> None:
    _require(os.geteuid() == 0, "root")
    _require(shutil.which("podman") is not None, "podman")
    _require(shutil.which("runc") is not None, "runc")
    from ferry.runtime import criu_probe

    # ferry's real probe, not `criu check` (which CRIU 4.1 passes on Linux 6.16+ while it cannot
    # dump a process holding a TCP socket): dump and restore a process with sockets and a lock.
    probe = criu_probe()
    _require(
        probe.ok,
        f"a CRIU that passes ferry's probe first on PATH (criu {probe.version or '?'}: {probe.stage}: "
        f"{probe.detail} [{probe.kind or 'unrecognised'}] {' | '.join(probe.errors[-4:])})",
    )


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 for the whole session; tests use their own buckets."""
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def gcs() -> Iterator[dict[str, str]]:
    """A GCS emulator on 127.0.0.1 for the whole session; yields gcsfs storage options."""
    with gcs_emulator() as endpoint:
        yield gcs_storage_options(endpoint)


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rootfs_tar(tmp_path_factory.mktemp("image"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in IMAGE_REPORT:
        terminalreporter.write_line(f"service image {line}")


@pytest.fixture(scope="session")
def service_images(tmp_path_factory: pytest.TempPathFactory) -> ServiceImages:
    return ServiceImages(tmp_path_factory.mktemp("service-images"))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "staging"
    monkeypatch.setenv("FERRY_STAGING", str(path))
    return path


_COUNTER = itertools.count()


def _host(base: Path, rootfs_tar: Path | None, host: Host | None = None) -> Host:
    host = host if host is not None else Host(base)
    if rootfs_tar is not None:
        host.podman("import", str(rootfs_tar), IMAGE)
    return host


@pytest.fixture
def host(real_criu: None, rootfs_tar: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    """The source host: a private Podman store with the test image; FERRY_PODMAN points at it."""
    # Podman refuses a runroot longer than 50 characters: keep these paths short.
    base = Path(f"/var/tmp/fth/{os.getpid()}-{next(_COUNTER)}a")
    h = Host(base)
    try:  # a failed setup (the image import) is cleaned up too
        _host(base, rootfs_tar, h)
        monkeypatch.setenv("FERRY_PODMAN", h.env_value)
        yield h
    finally:
        h.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def other_host(host: Host) -> Iterator[Host]:
    """A second, separate store with the same image (same id: saved and loaded)."""
    base = Path(str(host.base)[:-1] + "b")
    h = Host(base)
    try:
        archive = host.base / "image.tar"
        host.podman("save", "-o", str(archive), IMAGE)
        h.podman("load", "-i", str(archive))
        yield h
    finally:
        h.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def bare_host(host: Host) -> Iterator[Host]:
    """A brand-new store that has never seen the test image: a host after a disaster."""
    base = Path(str(host.base)[:-1] + "c")
    h = Host(base)
    try:
        yield h
    finally:
        h.cleanup()
        shutil.rmtree(base, ignore_errors=True)

"""The attack lab, built once for the whole package: a source store that snapshots the workload
(with a named volume, /dev/shm content and a rootfs diff) and a target store, the victim host,
with the same image, an image holding ``/data/link -> /`` and a Podman secret."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.snapshot import snapshot
from tests.archive_forge import (
    Unpacked,
    make_sentinel,
)
from tests.attack_lab import Attempt, Lab, VfsHost, mounts_below
from tests.e2e.attacks.exploits import (
    LINK_IMAGE,
    MARKER,
    SECRET,
    SECRET_TEXT,
    VOLUME,
    WORKLOAD_CMD,
)
from tests.helpers import IMAGE, ULIMITS, Host, linked_rootfs_tar, wait_for


def _copy_image(src: Host, dst: Host, image: str, work: Path) -> None:
    archive = work / (image.rsplit("/", 1)[-1].replace(":", "_") + ".tar")
    archive.unlink(missing_ok=True)
    src.podman("save", "-o", str(archive), image)
    dst.podman("load", "-i", str(archive))


@pytest.fixture(scope="package")
def lab(
    real_criu: None, rootfs_tar: Path, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    from prefect.settings import PREFECT_API_URL

    work = tmp_path_factory.mktemp("attack")
    pid = os.getpid()
    source = VfsHost(Path(f"/var/tmp/fth/{pid}-atk-s"))  # podman: runroot below 50 characters
    target = VfsHost(Path(f"/var/tmp/fth/{pid}-atk-t"))
    sentinel = make_sentinel(Path(f"/var/tmp/ferry-attack-sentinel-{pid}"))
    attacks = Path(f"/var/tmp/ferry-attack-{pid}")
    attacks.mkdir()
    try:
        source.podman("import", str(rootfs_tar), IMAGE)
        source.podman("import", str(linked_rootfs_tar(work / "link-image")), LINK_IMAGE)
        for image in (IMAGE, LINK_IMAGE):
            _copy_image(source, target, image, work)
        secret = work / "secret"
        secret.write_bytes(SECRET_TEXT)
        target.podman("secret", "create", SECRET, str(secret))
        source.podman("run", "-d", "--name", "app", "-v", f"{VOLUME}:/vol", *ULIMITS, IMAGE, "sh", "-c", WORKLOAD_CMD)
        wait_for(lambda: source.counter("app") >= 20, what="the workload to count")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FERRY_PODMAN", source.env_value)
            mp.setenv("FERRY_STAGING", str(work / "staging"))
            result = snapshot("app", f"file://{work}/seed", leave_running=True)
        base = Unpacked.parse(Path(result.url.removeprefix("file://")).read_bytes())
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env.update(
            FERRY_PODMAN=target.env_value,
            FERRY_STAGING=str(work / "staging"),
            PREFECT_API_URL=str(PREFECT_API_URL.value()),
            PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        )
        cid = source.podman("inspect", "--format", "{{.Id}}", "app").stdout.strip()
        userdata = [
            source.base / "root" / "vfs-containers" / cid / "userdata",
            source.base / "run" / "vfs-containers" / cid / "userdata",
        ]
        yield Lab(
            source,
            target,
            base,
            env,
            work / "stores",
            sentinel,
            attacks,
            MARKER,
            watched_mounts=[str(source.base), str(target.base), str(attacks), str(sentinel)],
            source_userdata=[p for p in userdata if p.exists()],
        )
    finally:
        for host in (source, target):
            host.cleanup()
            host.podman("volume", "prune", "-f", check=False)
        subprocess.run(["umount", "-R", "-l", str(attacks)], capture_output=True, check=False)
        for path in (source.base, target.base, sentinel, attacks):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def atk(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Attempt]:
    """This attack's container name, its own target tree on the host and a marker path."""
    short = request.node.name.removeprefix("test_").replace("[", "-").replace("]", "")
    digest = hashlib.sha256(short.encode()).hexdigest()[:6]
    short = "".join(c if c.isalnum() or c == "-" else "-" for c in short)[:36].strip("-") + "-" + digest
    name = f"atk-{short}"
    folder = lab.attacks / short
    # The target store holds no container or volume of its own: whatever is there was left by
    # an earlier attempt (already reported by it) and would make this one fail for its reason.
    lab.target.podman("rm", "-af", "-t", "0", check=False)
    lab.target.podman("volume", "prune", "-f", check=False)
    make_sentinel(folder / "target")
    (folder / "attacker").mkdir()
    yield Attempt(lab, name, folder / "target", folder / "marker")
    for mnt in sorted(mounts_below([str(folder)]), reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)

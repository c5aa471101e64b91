"""Nested tars: /dev/shm, volumes and CRIU tmpfs images writing through symlinks.

Part of issue 10's acceptance suite (see tests/e2e/attacks/__init__.py): each test is an archive an
attacker with write access to the bucket could write, restored as root on the real restore path.
"""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from tests.archive_forge import (
    Entry,
    Member,
    pack_tar,
)
from tests.attack_lab import Attempt, Lab
from tests.e2e.attacks.exploits import (
    DEVSHM,
    SYM,
    VOLUME,
    clone,
)

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]


# ---------------------------------------------------------------------------------------------
# Nested tars Podman untars as root, following absolute symlinks


def _escape_entries(atk: Attempt) -> list[Member]:
    """A symlink to the target, then through it: a new file, an overwrite, and a file where a
    directory is (Podman's untar removes the directory to make room)."""
    return [
        Member.of(Entry("escape", type=SYM, linkname=str(atk.dir))),
        Member.of(Entry("escape/pwned", b"created through a symlink\n")),
        Member.of(Entry("escape/victim", b"overwritten through a symlink\n")),
        Member.of(Entry("escape/sub", b"a file where a host directory was\n")),
    ]


def test_devshm_tar_writes_through_an_absolute_symlink(lab: Lab, atk: Attempt) -> None:
    u = clone(lab)
    u.set_tar(DEVSHM, [*u.tar(DEVSHM), *_escape_entries(atk)])
    atk.refused(u, r"devshm-checkpoint\.tar")


def test_volume_tar_writes_through_an_absolute_symlink(lab: Lab, atk: Attempt) -> None:
    u = clone(lab)
    name = f"volumes/{VOLUME}.tar"
    u.set_tar(name, [*u.tar(name), *_escape_entries(atk)])
    atk.refused(u, r"volumes/" + VOLUME)


def test_criu_tmpfs_image_writes_through_an_absolute_symlink(lab: Lab, atk: Attempt) -> None:
    """CRIU untars checkpoint/tmpfs-dev-*.tar.gz.img (the contents of the container's tmpfs
    mounts) itself: the same confinement applies."""
    u = clone(lab)
    member = next(m for m in u.members if m.info.name.startswith("checkpoint/tmpfs-dev-"))
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(member.data or b"")), mode="r:") as tar:
        inner = [Member(i, tar.extractfile(i).read() if i.isreg() else None) for i in tar]  # type: ignore[union-attr]
    member.data = gzip.compress(pack_tar([*inner, *_escape_entries(atk)], tarfile.GNU_FORMAT))
    member.info.size = len(member.data)
    atk.refused(u, r"tmpfs")

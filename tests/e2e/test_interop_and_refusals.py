"""Podman reads ferry's archives, ferry reads Podman's; broken archives create nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ferry.errors import ContainerStateError, IntegrityError, UnsafeArchiveError, UnsupportedArchiveError
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import SIDECAR_SUFFIX
from tests.helpers import Host, assert_consecutive_log, signed_sidecar, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]


def _running_and_counting(host: Host, name: str, before: int) -> None:
    assert host.state(name) == "running"
    wait_for(lambda: host.counter(name) > before + 20, what=f"{name} to keep counting")
    values = assert_consecutive_log(host.exec(name, "cat", "/data/log"))
    assert values[-1] > before


def test_podman_imports_a_ferry_archive(host: Host, other_host: Host, tmp_path: Path) -> None:
    host.run_workload("app")
    counted = host.counter("app")
    result = snapshot("app", f"file://{tmp_path}/store")
    local = tmp_path / "downloaded.tar.zst"
    shutil.copy(result.url.removeprefix("file://"), local)

    other_host.podman("container", "restore", "--import", str(local))

    _running_and_counting(other_host, "app", counted)
    assert other_host.exec("app", "cat", "/data/new/added").strip() == "added"


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_ferry_restores_a_podman_export(
    host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    host.run_workload("app")
    counted = host.counter("app")
    export = tmp_path / "podman-export.tar.gz"  # the name lies, as Podman's often does
    host.podman("container", "checkpoint", "--export", str(export), "--compress", compression, "app")
    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)

    with pytest.raises(UnsafeArchiveError, match="not signed.*--allow-unverified --allow-unsigned"):
        restore(f"file://{export}")
    with pytest.raises(UnsupportedArchiveError, match="--allow-unverified"):
        restore(f"file://{export}", allow_unsigned=True)
    assert other_host.names() == set()

    restored = restore(f"file://{export}", allow_unverified=True, allow_unsigned=True)

    assert restored.name == "app"
    _running_and_counting(other_host, "app", counted)
    gone = other_host.podman("exec", "app", "ls", "/etc/deleteme", check=False)
    assert gone.returncode != 0


def _snapshot_for_damage(host: Host, tmp_path: Path) -> Path:
    host.run_workload("app")
    result = snapshot("app", f"file://{tmp_path}/store", leave_running=True)
    return Path(result.url.removeprefix("file://"))


def test_wrong_checksum_is_refused_and_nothing_is_created(host: Host, tmp_path: Path) -> None:
    archive = _snapshot_for_damage(host, tmp_path)
    sidecar = Path(str(archive) + SIDECAR_SUFFIX)
    record = json.loads(sidecar.read_text())
    record["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(record))
    with pytest.raises(IntegrityError, match="signature .* does not verify"):
        restore(f"file://{archive}", name="app-copy")
    sidecar.write_bytes(signed_sidecar(sidecar.read_bytes()))  # as if its trusted signer had written it

    with pytest.raises(IntegrityError, match="sha256 .*does not match the store's record"):
        restore(f"file://{archive}", name="app-copy")

    assert host.names() == {"app"}


def test_flipped_byte_is_refused(host: Host, tmp_path: Path) -> None:
    archive = _snapshot_for_damage(host, tmp_path)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x40
    archive.write_bytes(bytes(data))

    with pytest.raises(IntegrityError):
        restore(f"file://{archive}", name="app-copy")

    assert host.names() == {"app"}


def test_truncated_archive_is_refused(host: Host, tmp_path: Path) -> None:
    archive = _snapshot_for_damage(host, tmp_path)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])

    with pytest.raises(IntegrityError, match="truncated|sha256"):
        restore(f"file://{archive}", name="app-copy")

    assert host.names() == {"app"}


def test_restore_onto_a_taken_name_leaves_the_existing_container_alone(host: Host, tmp_path: Path) -> None:
    archive = _snapshot_for_damage(host, tmp_path)
    cid = host.podman("container", "inspect", "--format", "{{.Id}}", "app").stdout.strip()

    with pytest.raises(ContainerStateError, match="already exists"):
        restore(f"file://{archive}")

    assert host.podman("container", "inspect", "--format", "{{.Id}}", "app").stdout.strip() == cid
    assert host.state("app") == "running"

"""End to end on real Podman, runc and CRIU: snapshot, restore, migrate between stores."""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path

import fsspec
import pytest
import zstandard

from ferry.errors import ContainerNotFoundError, StoreError
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import ArchiveStore
from tests.helpers import Host, assert_consecutive_log, wait_for
from tests.servers import S3Server

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]


def _members(archive: Path) -> dict[str, bytes]:
    with (
        archive.open("rb") as f,
        zstandard.ZstdDecompressor().stream_reader(f) as plain,
        tarfile.open(fileobj=plain, mode="r|") as tar,
    ):
        out = {}
        for info in tar:
            data = tar.extractfile(info)
            out[info.name] = data.read() if data else b""
        return out


def _check_restored(host: Host, name: str, counted_before: int) -> None:
    assert host.state(name) == "running"
    wait_for(lambda: host.counter(name) > counted_before + 20, what=f"{name} to keep counting")
    values = assert_consecutive_log(host.exec(name, "cat", "/data/log"))
    assert values[-1] > counted_before, "the counter did not continue from the snapshot"
    assert host.exec(name, "cat", "/data/new/added").strip() == "added"
    gone = host.podman("exec", name, "ls", "/etc/deleteme", check=False)
    assert gone.returncode != 0, "a file the container deleted came back"


def test_stop_mode_snapshot_then_restore(host: Host, tmp_path: Path) -> None:
    host.run_workload("app")
    counted = host.counter("app")
    store = f"file://{tmp_path}/store"

    result = snapshot("app", store)

    assert result.url.startswith(store + "/app/")
    assert result.mode == "stop"
    assert host.state("app") == "exited"
    archive = Path(result.url.removeprefix("file://"))
    members = _members(archive)
    for name in (
        "checkpoint/inventory.img",
        "config.dump",
        "spec.dump",
        "rootfs-diff.tar",
        "deleted.files",
        "ferry-manifest.json",
    ):
        assert name in members, name
    # stop mode: the rootfs diff went in first, compressed while CRIU dumped
    assert list(members)[:2] == ["rootfs-diff.tar", "deleted.files"]
    assert json.loads(members["deleted.files"]) == ["/etc/deleteme"]
    manifest = json.loads(members["ferry-manifest.json"])
    assert manifest["container"]["name"] == "app"
    assert manifest["source"]["criu"] and manifest["source"]["podman"]
    with tarfile.open(fileobj=__import__("io").BytesIO(members["rootfs-diff.tar"])) as diff:
        names = set(diff.getnames())
    assert {"data/log", "data/counter", "data/new/added"} <= names

    host.podman("rm", "app")
    restored = restore(result.url)

    assert restored.name == "app"
    _check_restored(host, "app", counted)


def test_leave_running_captures_memory_and_rootfs_at_one_instant(host: Host, tmp_path: Path) -> None:
    host.run_workload("app")
    store = f"file://{tmp_path}/store"

    result = snapshot("app", store, leave_running=True)
    counted = host.counter("app")

    assert result.mode == "leave-running"
    assert host.state("app") == "running"
    # leave-running mode: the rootfs diff goes in after Podman's export, so the thaw never waits on it
    members = list(_members(Path(result.url.removeprefix("file://"))))
    assert members[-3:] == ["rootfs-diff.tar", "deleted.files", "ferry-manifest.json"]
    wait_for(lambda: host.counter("app") > counted + 20, what="the original to keep counting")
    restored = restore(result.url, name="app-copy")

    assert restored.name == "app-copy"
    assert host.state("app") == "running"
    # The copy's log is consecutive: the value its memory continued from is exactly the last
    # line its file system had, so both were taken at the same instant.
    _check_restored(host, "app-copy", 0)


def test_restore_on_another_host(host: Host, other_host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host.run_workload("app")
    counted = host.counter("app")
    result = snapshot("app", f"file://{tmp_path}/store")

    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)
    restore(result.url)

    assert other_host.state("app") == "running"
    assert host.state("app") == "exited"
    _check_restored(other_host, "app", counted)


def test_missing_container_is_a_clear_error(host: Host, tmp_path: Path) -> None:
    with pytest.raises(ContainerNotFoundError, match="no container 'nope'"):
        snapshot("nope", f"file://{tmp_path}/store")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.zst"))


def test_unwritable_store_fails_before_the_container_stops(host: Host, tmp_path: Path) -> None:
    host.run_workload("app")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store directory should be")

    with pytest.raises(StoreError, match="not-a-dir"):
        snapshot("app", f"file://{blocker}/store")

    assert host.state("app") == "running"
    before = host.counter("app")
    wait_for(lambda: host.counter("app") > before, what="the container to keep running")


def test_failed_upload_in_stop_mode_restores_the_container_here(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host.run_workload("app")
    counted = host.counter("app")
    store = f"file://{tmp_path}/store"

    def broken_publish(*args: object, **kwargs: object) -> None:
        raise StoreError("injected: the store went away before the sidecar was written")

    monkeypatch.setattr(ArchiveStore, "commit_sidecar", broken_publish)
    with pytest.raises(StoreError, match="restored on this host"):
        snapshot("app", store)

    _check_restored(host, "app", counted)
    assert ArchiveStore(store).archives() == []
    assert ArchiveStore(store).incomplete() == [], "the unpublished archive was left behind"


@pytest.mark.server
def test_snapshot_to_s3_and_restore_on_another_host(
    host: Host, other_host: Host, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"ferry-e2e-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    options = s3.options()
    host.run_workload("app")
    counted = host.counter("app")

    result = snapshot("app", f"s3://{bucket}/nightly", storage_options=options)

    assert result.url.startswith(f"s3://{bucket}/nightly/app/")
    assert [e.url for e in ArchiveStore(f"s3://{bucket}/nightly", options).archives()] == [result.url]
    monkeypatch.setenv("FERRY_PODMAN", other_host.env_value)
    restore(result.url, storage_options=options)
    _check_restored(other_host, "app", counted)


@pytest.mark.server
def test_missing_bucket_fails_before_the_container_stops(host: Host, s3: S3Server) -> None:
    host.run_workload("app")
    with pytest.raises(StoreError, match="no-such-bucket"):
        snapshot("app", "s3://no-such-bucket-ferry/nightly", storage_options=s3.options())
    assert host.state("app") == "running"


@pytest.mark.server
def test_snapshot_to_gcs_and_restore(host: Host, gcs: dict[str, str]) -> None:
    bucket = f"ferry-e2e-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("gcs", **gcs).mkdir(bucket)
    host.run_workload("app")

    result = snapshot("app", f"gs://{bucket}/nightly", leave_running=True, storage_options=gcs)

    assert result.url.startswith(f"gs://{bucket}/nightly/app/")
    restored = restore(result.url, name="app-from-gcs", storage_options=gcs)
    assert restored.name == "app-from-gcs"
    _check_restored(host, "app-from-gcs", 0)

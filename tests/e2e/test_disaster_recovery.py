"""Disaster recovery on real CRIU: a fresh host with nothing but the store gets its containers back."""

from __future__ import annotations

import uuid

import pytest

from ferry.errors import RestoreError
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import ArchiveStore
from tests.helpers import IMAGE, Host, assert_consecutive_log, wait_for
from tests.servers import S3Server

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.server,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"ferry-dr-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(name)
    return name


def test_restore_with_shipped_image_on_a_host_that_never_saw_it(
    host: Host, bare_host: Host, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"s3://{bucket}/ferry"
    host.run_workload("app")
    counted = host.counter("app")
    result = snapshot("app", store, with_image=True, storage_options=s3.options())
    assert result.image_url.startswith(f"s3://{bucket}/ferry/_images/")
    assert bare_host.podman("image", "exists", IMAGE, check=False).returncode != 0

    monkeypatch.setenv("FERRY_PODMAN", bare_host.env_value)
    restored = restore(store, latest="app", storage_options=s3.options())

    assert restored.name == "app" and bare_host.state("app") == "running"
    wait_for(lambda: bare_host.counter("app") > counted + 20, what="the restored container to count on")
    assert assert_consecutive_log(bare_host.exec("app", "cat", "/data/log"))[-1] > counted


def test_snapshots_sharing_an_image_store_it_once(host: Host, s3: S3Server, bucket: str) -> None:
    store = f"s3://{bucket}/ferry"
    host.run_workload("one")
    host.run_workload("two")

    first = snapshot("one", store, leave_running=True, with_image=True, storage_options=s3.options())
    fs = ArchiveStore(store, s3.options()).fs
    stamp = fs.info(first.image_url)["LastModified"]
    second = snapshot("two", store, leave_running=True, with_image=True, storage_options=s3.options())

    assert first.image_url == second.image_url
    assert len(fs.ls(f"{bucket}/ferry/_images", refresh=True)) == 2  # the image and its record, once
    assert fs.info(second.image_url, refresh=True)["LastModified"] == stamp
    assert {e.sidecar.manifest.container.name for e in ArchiveStore(store, s3.options()).archives()} == {"one", "two"}


def test_image_missing_everywhere_is_a_clear_error_and_creates_nothing(
    host: Host, bare_host: Host, s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = f"s3://{bucket}/ferry"
    host.run_workload("app")
    result = snapshot("app", store, leave_running=True, storage_options=s3.options())

    monkeypatch.setenv("FERRY_PODMAN", bare_host.env_value)
    with pytest.raises(RestoreError, match="neither on this host nor in the store"):
        restore(result.url, storage_options=s3.options())

    assert bare_host.names() == set()


def test_latest_picks_the_newest_snapshot(host: Host, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    store = f"file://{tmp_path}/store"
    host.run_workload("app")
    snapshot("app", store, leave_running=True)
    counted = host.counter("app")
    snapshot("app", store, leave_running=True)

    restored = restore(store, latest="app", name="app-latest")

    assert restored.name == "app-latest"
    first_restored = int(host.exec("app-latest", "head", "-n", "1", "/data/counter").strip())
    assert first_restored >= counted, "restored the older snapshot"

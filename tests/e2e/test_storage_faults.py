"""Connections cut mid-upload and mid-download (a proxy on loopback in front of a real S3 server):
retried to a verified archive, or a clear failure with nothing listed and the container kept."""

from __future__ import annotations

import uuid
from urllib.parse import urlparse

import pytest

from ferry.errors import StoreError
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import ArchiveStore
from tests.helpers import Host, wait_for
from tests.servers import FlakyProxy, S3Server

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.server,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]


def _options(endpoint: str) -> dict[str, object]:
    # s3fs retries each call itself (5 tries); botocore's own retries are off so those are what absorb a cut.
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"ferry-cut-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(name)
    return name


def _port(s3: S3Server) -> int:
    return int(urlparse(s3.endpoint).port or 0)


def test_cut_uploads_and_downloads_are_retried_to_a_verified_restore(host: Host, s3: S3Server, bucket: str) -> None:
    host.run_workload("app")
    up = FlakyProxy(_port(s3), after=8 << 10, drops=2, direction="up")
    try:
        result = snapshot("app", f"s3://{bucket}/ferry", leave_running=True, storage_options=_options(up.endpoint))
    finally:
        up.close()
    assert up.dropped == 2, "the proxy never cut an upload: the test proved nothing"

    down = FlakyProxy(_port(s3), after=8 << 10, drops=2, direction="down")
    try:
        restored = restore(result.url, name="copy", storage_options=_options(down.endpoint))
    finally:
        down.close()
    assert down.dropped >= 1, "the proxy never cut a download"
    assert restored.name == "copy" and host.state("copy") == "running"


def test_upload_cut_every_time_fails_clearly_and_lists_nothing(host: Host, s3: S3Server, bucket: str) -> None:
    host.run_workload("app")
    proxy = FlakyProxy(_port(s3), after=8 << 10, drops=10_000, direction="up")
    try:
        with pytest.raises(StoreError, match=f"s3://{bucket}/ferry"):
            snapshot("app", f"s3://{bucket}/ferry", storage_options=_options(proxy.endpoint))
    finally:
        proxy.close()

    store = ArchiveStore(f"s3://{bucket}/ferry", s3.options())
    assert store.archives() == []
    assert store.incomplete() == []
    assert host.state("app") == "running", "the stop-mode snapshot's rollback should have restored it"
    before = host.counter("app")
    wait_for(lambda: host.counter("app") > before, what="the container to run on")

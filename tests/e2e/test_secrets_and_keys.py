"""Signing, encryption and secrecy on real CRIU and a real S3 server: process memory never leaves
the host in the clear, unsigned or foreign archives are refused, and no secret shows anywhere."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from ferry.errors import IntegrityError, UnsafeArchiveError, UsageError
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import ArchiveStore
from tests.helpers import ULIMITS, WORKLOAD, Host, wait_for
from tests.servers import S3Server

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.server,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]


def test_encrypted_signed_snapshot_keeps_every_secret(
    host: Host, s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db_password = f"hunter2-{uuid.uuid4().hex}"  # lives in the container's process memory
    aws_secret = f"aws-secret-{uuid.uuid4().hex}"
    signing_key = f"signing-{uuid.uuid4().hex}"
    encryption_key = uuid.uuid4().hex + uuid.uuid4().hex
    secrets = [db_password, aws_secret, signing_key, encryption_key]
    bucket = f"ferry-sec-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFERRYTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)
    monkeypatch.setenv("FERRY_SIGNING_KEY", signing_key)
    monkeypatch.setenv("FERRY_ENCRYPTION_KEY", encryption_key)
    options = {"client_kwargs": {"endpoint_url": s3.endpoint, "region_name": "us-east-1"}}
    host.podman(
        "run",
        "-d",
        "--name",
        "app",
        "-e",
        f"DB_PASSWORD={db_password}",
        *ULIMITS,
        "localhost/ferry-test:latest",
        "sh",
        "-c",
        WORKLOAD,
    )
    wait_for(lambda: host.counter("app") > 20, what="the workload to start")

    result = snapshot("app", f"s3://{bucket}/ferry", leave_running=True, storage_options=options)

    store = ArchiveStore(f"s3://{bucket}/ferry", options)
    stored = store.fs.cat_file(result.url)
    sidecar_text = store.fs.cat_file(result.url + ".ferry.json").decode()
    sidecar = json.loads(sidecar_text)
    assert sidecar["encryption"] and sidecar["signature"].startswith("hmac-sha256:")
    assert db_password.encode() not in stored, "process memory left the host in the clear"

    with monkeypatch.context() as m:
        m.delenv("FERRY_ENCRYPTION_KEY")
        with pytest.raises(UsageError, match="encrypted") as no_key:
            restore(result.url, name="copy", storage_options=options)
    with monkeypatch.context() as m:
        m.setenv("FERRY_SIGNING_KEY", "another-key-" + "x" * 40)
        with pytest.raises(IntegrityError, match="signature") as wrong_signer:
            restore(result.url, name="copy", storage_options=options)
    assert host.names() == {"app"}

    restored = restore(result.url, name="copy", storage_options=options)
    assert restored.name == "copy" and host.state("copy") == "running"
    env = host.exec("copy", "cat", "/proc/1/environ")
    assert db_password in env, "the restored process lost its memory"

    with get_client(sync_client=True) as client:
        logs = " ".join(log.message for log in client.read_logs())
        artifacts = " ".join(json.dumps(a.data) + str(a.description) for a in client.read_artifacts())
    seen = {
        "logs": logs,
        "artifacts": artifacts,
        "sidecar": sidecar_text,
        "results": repr(result) + repr(restored),
        "errors": str(no_key.value) + str(wrong_signer.value),
    }
    for where, text in seen.items():
        for secret in secrets:
            assert secret not in text, f"a secret appears in the {where}"
    assert logs and artifacts, "nothing was logged or published: the scan proves nothing"


def test_unsigned_archive_is_refused_when_a_key_is_set(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host.run_workload("app")
    result = snapshot("app", f"file://{tmp_path}/store", leave_running=True)

    monkeypatch.setenv("FERRY_SIGNING_KEY", "k" * 40)
    with pytest.raises(UnsafeArchiveError, match="no signature"):
        restore(result.url, name="copy")
    assert host.names() == {"app"}

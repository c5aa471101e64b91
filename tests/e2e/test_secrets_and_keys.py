"""Signing, encryption and secrecy on real CRIU and a real S3 server: process memory never leaves
the host in the clear, unsigned or foreign archives are refused, and no secret shows anywhere."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterLevel, LogFilterTimestamp

from ferry import keys
from ferry.archive.manifest import Sidecar
from ferry.archive.signing import sign
from ferry.errors import IntegrityError, UnsafeArchiveError, UsageError
from ferry.keygen import KeyPair, keygen
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import SIDECAR_SUFFIX, ArchiveStore
from tests import hostile_corpus as hc
from tests.helpers import ULIMITS, WORKLOAD, Host, wait_for
from tests.servers import S3Server

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
    pytest.mark.server,
    pytest.mark.usefixtures("prefect_harness", "staging"),
]


def _private_parts(pair: KeyPair) -> list[str]:
    """The private key as it could leak: its PEM text, each base64 line of it, its raw bytes in hex."""
    pem = pair.private.read_text()
    raw = keys.private_key_from_file(pair.private).private_bytes_raw()
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return [pem.strip(), *lines, raw.hex()]


def test_encrypted_signed_snapshot_keeps_every_secret(
    host: Host, s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db_password = f"hunter2-{uuid.uuid4().hex}"  # lives in the container's process memory
    aws_secret = f"aws-secret-{uuid.uuid4().hex}"
    encryption_key = uuid.uuid4().hex + uuid.uuid4().hex
    signer = keygen(tmp_path / "signer", "ferry@source")
    secrets = [db_password, aws_secret, encryption_key, *_private_parts(signer)]
    # The snapshot host's private key comes from a Prefect Secret block; the restoring host holds
    # only the public key, in its keyring.
    block = f"ferry-signing-{uuid.uuid4().hex[:8]}"
    Secret(value=signer.private.read_text()).save(block)
    keyring = tmp_path / "trusted-keys"
    keyring.write_text(signer.public.read_text())
    bucket = f"ferry-sec-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFERRYTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)
    monkeypatch.delenv("FERRY_SIGNING_KEY")
    monkeypatch.setenv("FERRY_SIGNING_KEY_BLOCK", block)
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
    sidecar_text = store.fs.cat_file(result.url + SIDECAR_SUFFIX).decode()
    sidecar = json.loads(sidecar_text)
    assert sidecar["encryption"]
    assert sidecar["signature"].startswith(f"ed25519 {signer.key.fingerprint} ")
    assert db_password.encode() not in stored, "process memory left the host in the clear"

    # From here on this is the restoring host: no private key of the source, only the keyring.
    monkeypatch.delenv("FERRY_SIGNING_KEY_BLOCK")
    with pytest.raises(UnsafeArchiveError, match="not in this host's keyring") as untrusted:
        restore(result.url, name="copy", storage_options=options)  # the session's keyring lacks ferry@source
    monkeypatch.setenv("FERRY_TRUSTED_KEYS", str(keyring))
    with monkeypatch.context() as m:
        m.delenv("FERRY_ENCRYPTION_KEY")
        with pytest.raises(UsageError, match="encrypted") as no_key:
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
        "errors": str(no_key.value) + str(untrusted.value),
    }
    for where, text in seen.items():
        for secret in secrets:
            assert secret not in text, f"a secret appears in the {where}"
    assert logs and artifacts, "nothing was logged or published: the scan proves nothing"


def test_unsigned_snapshot_warns_and_is_refused_unless_allowed(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    host.run_workload("app")
    started = datetime.now(UTC)
    with monkeypatch.context() as m:  # a snapshot host without any signing key
        m.delenv("FERRY_SIGNING_KEY")
        m.setattr(keys, "DEFAULT_SIGNING_KEY", tmp_path / "no-such.key")
        with caplog.at_level(logging.WARNING, logger="ferry"):
            result = snapshot("app", f"file://{tmp_path}/store", leave_running=True)
    assert "UNSIGNED" in caplog.text and "--allow-unsigned" in caplog.text and "ferry keygen" in caplog.text
    warnings = LogFilter(level=LogFilterLevel(ge_=logging.WARNING), timestamp=LogFilterTimestamp(after_=started))

    def in_the_run_logs() -> bool:  # and in the run's logs, in Prefect (sent in the background)
        with get_client(sync_client=True) as client:
            return any("UNSIGNED" in log.message for log in client.read_logs(log_filter=warnings))

    wait_for(in_the_run_logs, what="the unsigned warning in the run's logs", interval=1)
    assert json.loads(Path(result.url.removeprefix("file://") + SIDECAR_SUFFIX).read_text())["signature"] == ""

    with pytest.raises(UnsafeArchiveError, match="not signed") as refused:
        restore(result.url, name="copy")
    assert "FERRY_TRUSTED_KEYS" in str(refused.value) and "--allow-unsigned" in str(refused.value)
    assert host.names() == {"app"}

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ferry"):
        restored = restore(result.url, name="copy", allow_unsigned=True)
    assert restored.name == "copy" and host.state("copy") == "running"
    assert "UNSIGNED" in caplog.text and "accepted because of --allow-unsigned" in caplog.text


def test_archives_signed_by_keys_not_in_the_keyring_are_refused(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker with write access to the store and a key of their own: their archive, and a real
    archive they altered and signed again, are refused; with --allow-unsigned the altered one is
    still refused by the integrity checks, and only the intact one restores."""
    attacker = keygen(tmp_path / "attacker", "ferry@attacker")
    host.run_workload("app")
    with monkeypatch.context() as m:
        m.setenv("FERRY_SIGNING_KEY", str(attacker.private))
        theirs = snapshot("app", f"file://{tmp_path}/theirs", leave_running=True)
    ours = snapshot("app", f"file://{tmp_path}/ours", leave_running=True)
    tampered = _tamper_and_resign(Path(ours.url.removeprefix("file://")), attacker)

    for url in (theirs.url, tampered):
        with pytest.raises(
            UnsafeArchiveError, match=f"signed by key {re.escape(attacker.key.fingerprint)}, which is not in"
        ) as refused:
            restore(url, name="copy")
        assert "ferry@tests" in str(refused.value), "the refusal names the keys this host trusts"
    with pytest.raises(IntegrityError, match="checkpoint/pages-.*sha256|sha256.*checkpoint/pages-"):
        restore(tampered, name="copy", allow_unsigned=True)
    assert host.names() == {"app"}

    restored = restore(theirs.url, name="copy", allow_unsigned=True)
    assert restored.name == "copy" and host.state("copy") == "running"


def _tamper_and_resign(archive: Path, key: KeyPair) -> str:
    """Change one byte of the process memory in a real archive, keeping its manifest, and write a
    sidecar that matches the new bytes, signed with ``key``."""
    unpacked = hc.Unpacked.parse(archive.read_bytes())
    pages = next(m for m in unpacked.members if m.info.name.startswith("checkpoint/pages-") and m.data)
    assert pages.data is not None
    unpacked.set(pages.info.name, bytes([pages.data[0] ^ 0x40]) + pages.data[1:])
    data = hc.pack([*unpacked.members, hc.manifest_member(unpacked.manifest)], unpacked.compression)
    archive.write_bytes(data)
    sidecar_path = Path(str(archive) + SIDECAR_SUFFIX)
    sidecar = Sidecar.from_json(sidecar_path.read_bytes())
    resigned = replace(sidecar, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    sidecar_path.write_bytes(sign(resigned, keys.private_key_from_file(key.private)).to_json())
    return f"file://{archive}"

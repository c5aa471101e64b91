"""Option resolution, the CRIU config file, volume names, the manifest's dump options."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ferry.archive.criu_config import config_text, write_criu_config
from ferry.archive.manifest import ContainerRef, Manifest, Sidecar, Source
from ferry.archive.podman_config import named_volumes
from ferry.archive.signing import Keyring, PublicKey, check, sign
from ferry.errors import UnsafeArchiveError, UsageError
from ferry.options import DumpOptions, RestoreOptions, check_publish, check_rename, restore_options


def test_dump_defaults_take_connections_and_locks() -> None:
    assert DumpOptions().podman_args() == ["--tcp-established", "--file-locks"]
    assert DumpOptions(tcp_established=False, file_locks=False).podman_args() == []


def test_restore_defaults_per_use() -> None:
    dr = restore_options("restore")
    assert (dr.tcp_established, dr.tcp_close, dr.ignore_static_ip, dr.ignore_static_mac, dr.file_locks) == (
        False,
        True,
        True,
        True,
        True,
    )
    assert dr.podman_args() == ["--file-locks", "--ignore-static-ip", "--ignore-static-mac"]
    mig = restore_options("migrate")
    assert (mig.tcp_established, mig.tcp_close, mig.ignore_static_ip, mig.ignore_static_mac) == (
        True,
        False,
        False,
        False,
    )
    assert mig.podman_args() == ["--tcp-established", "--file-locks"]


def test_asking_for_one_tcp_mode_turns_the_other_off() -> None:
    assert restore_options("restore", tcp_established=True).tcp_close is False
    assert restore_options("migrate", tcp_close=True).tcp_established is False
    neither = restore_options("restore", tcp_established=False, tcp_close=False)
    assert (neither.tcp_established, neither.tcp_close) == (False, False)


def test_both_tcp_modes_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="contradict"):
        restore_options("restore", tcp_established=True, tcp_close=True)


def test_a_new_name_with_established_connections_is_refused_up_front() -> None:
    with pytest.raises(UsageError, match="under a new name \\(new_name 'moved'\\).*tcp-close"):
        check_rename(restore_options("migrate"), "moved", "new_name")
    check_rename(restore_options("migrate"), None)  # the same name: connections kept
    check_rename(restore_options("migrate", tcp_close=True), "moved")  # renamed, connections closed
    check_rename(restore_options("restore"), "copy")


@pytest.mark.parametrize(
    "spec", ["80", "8080:80", "127.0.0.1:8080:80/tcp", ":80", "[::1]:8080:80", "8000-8010:80-90/udp"]
)
def test_publish_accepts_podman_syntax(spec: str) -> None:
    assert check_publish(spec) == spec
    assert RestoreOptions(publish=(spec,)).podman_args()[-1] == f"--publish={spec}"


@pytest.mark.parametrize("spec", ["", " 80", "--privileged", "80/icmp", "a:b:c", "80:http", "1.2.3.4:80:80 x"])
def test_publish_refuses_anything_else(spec: str) -> None:
    with pytest.raises(UsageError, match="--publish"):
        check_publish(spec)


def test_criu_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_criu_config(tmp_path / "criu.conf", tcp_close=True)
    assert path.read_text() == "tcp-close\n" == config_text(tcp_close=True)
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "entry",
    [
        {"volumeName": "../../etc", "dest": "/v"},
        {"volumeName": "a/b", "dest": "/v"},
        {"volumeName": "", "dest": "/v"},
        {"volumeName": "ok", "dest": "relative"},
        "not-an-object",
    ],
)
def test_volume_names_that_could_leave_the_volume_dir_are_refused(entry: object) -> None:
    with pytest.raises(UnsafeArchiveError):
        named_volumes({"namedVolumes": [entry]})


def _sidecar(manifest: Manifest) -> Sidecar:
    return Sidecar("a.tar.zst", 10, "0" * 64, "zstd", manifest)


def test_manifest_records_dump_options_and_old_manifests_stay_readable_and_signed() -> None:
    old = Manifest(ContainerRef("app", "a" * 64), Source(host="h"), "stop", "2026-01-01T00:00:00.000Z")
    old_json = json.loads(old.to_json())
    assert "dump_options" not in old_json, "a manifest without options must serialise as before"
    assert Manifest.from_json(old.to_json()) == old

    new = replace(old, dump_options=DumpOptions().as_record())
    assert Manifest.from_json(new.to_json()).dump_options == {"tcp_established": True, "file_locks": True}

    key = Ed25519PrivateKey.generate()
    ring = Keyring().with_key(PublicKey.of(key.public_key(), "test"))
    signed_old = sign(_sidecar(old), key)
    assert check(Sidecar.from_json(signed_old.to_json()), ring).trusted  # the signature survives a round trip
    signed_new = sign(_sidecar(new), key)
    assert check(Sidecar.from_json(signed_new.to_json()), ring).trusted
    assert signed_old.signature != signed_new.signature


def test_manifest_refuses_malformed_dump_options() -> None:
    raw = json.loads(Manifest(ContainerRef("a", "b"), Source(), "stop", "t").to_json())
    raw["dump_options"] = {"tcp_established": "yes"}
    with pytest.raises(Exception, match="dump_options"):
        Manifest.from_json(json.dumps(raw).encode())

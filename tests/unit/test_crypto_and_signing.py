"""Encryption (chunked AES-GCM) and signing (Ed25519 over the sidecar, a keyring of trusted keys) of archives."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from ferry import doctor, keys
from ferry.archive import crypto, signing
from ferry.archive.envelope import open_plain
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import verify
from ferry.archive.signing import Keyring, PublicKey, check, sign
from ferry.errors import IntegrityError, UnsafeArchiveError, UsageError
from ferry.keygen import keygen
from tests.archive_forge import Forge

KEY = bytes(range(32))


def _seal(data: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    enc = crypto.Encryptor(out, key)
    for i in range(0, len(data), 100_000):
        enc.write(data[i : i + 100_000])
    enc.finish()
    return out.getvalue()


def _open(sealed: bytes, key: bytes = KEY) -> bytes:
    return crypto.Decryptor(io.BytesIO(sealed), key).read()


@pytest.mark.parametrize("size", [0, 1, crypto.CHUNK - 1, crypto.CHUNK, crypto.CHUNK + 1, 3 * crypto.CHUNK + 17])
def test_roundtrip_at_chunk_boundaries(size: int) -> None:
    data = os.urandom(size)
    sealed = _seal(data)
    if size >= 16:  # a 1-byte plaintext turns up in any ciphertext by chance
        assert data not in sealed
    assert _open(sealed) == data


def test_wrong_key_is_refused() -> None:
    with pytest.raises(IntegrityError, match="wrong FERRY_ENCRYPTION_KEY"):
        _open(_seal(b"secret memory"), key=bytes(32))


def test_tampering_truncation_and_reordering_are_refused() -> None:
    data = os.urandom(3 * crypto.CHUNK)
    sealed = bytearray(_seal(data))
    flipped = bytes(sealed[:-1] + bytes([sealed[-1] ^ 1]))
    sealed_chunk = crypto.CHUNK + crypto.TAG
    body = bytes(sealed[crypto.HEADER :])
    chunks = [body[i : i + sealed_chunk] for i in range(0, len(body), sealed_chunk)]
    header = bytes(sealed[: crypto.HEADER])
    dropped_last = header + b"".join(chunks[:-1])
    swapped = header + chunks[1] + chunks[0] + b"".join(chunks[2:])
    for broken in (flipped, dropped_last, swapped, header):
        with pytest.raises(IntegrityError):
            _open(broken)


def test_keys_parse_from_hex_or_base64_only_at_32_bytes() -> None:
    assert crypto.parse_key(KEY.hex()) == KEY
    assert crypto.parse_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=") == KEY
    with pytest.raises(UsageError, match="32-byte"):
        crypto.parse_key("too short")


def test_encrypted_archive_verifies_through_the_envelope() -> None:
    data = Forge().bytes()
    report = verify(io.BytesIO(data))
    assert report.manifest is not None
    sealed = _seal(data)

    sidecar = Sidecar(
        "a.tar.zst",
        len(sealed),
        hashlib.sha256(sealed).hexdigest(),
        "zstd",
        report.manifest,
        encryption=crypto.SCHEME,
        plain_size=len(data),
        plain_sha256=report.archive_sha256,
    )
    opened = open_plain(io.BytesIO(sealed), sidecar, KEY)
    assert verify(opened.plain, sidecar=opened.sidecar).members == report.members
    opened.check_stored()
    with pytest.raises(UsageError, match="encrypted"):
        open_plain(io.BytesIO(sealed), sidecar, None)


# -- signing ------------------------------------------------------------------------------------

TRUSTED = Ed25519PrivateKey.generate()
ATTACKER = Ed25519PrivateKey.generate()


def _sidecar() -> Sidecar:
    report = verify(io.BytesIO(Forge().bytes()))
    assert report.manifest is not None
    return Sidecar("a.tar.zst", report.archive_size, report.archive_sha256, "zstd", report.manifest)


def _ring(*private: Ed25519PrivateKey) -> Keyring:
    ring = Keyring()
    for number, key in enumerate(private):
        ring = ring.with_key(PublicKey.of(key.public_key(), f"host{number + 1}"))
    return ring


def test_a_signed_sidecar_verifies_by_its_key_id_also_after_a_round_trip_through_json() -> None:
    signed = sign(_sidecar(), TRUSTED)
    scheme, key_id, _ = signed.signature.split()
    assert scheme == "ed25519" and key_id == signing.fingerprint(TRUSTED.public_key())
    for sidecar in (signed, Sidecar.from_json(signed.to_json())):
        verdict = check(sidecar, _ring(ATTACKER, TRUSTED))  # the key id picks the key
        assert verdict.trusted and "host2" in verdict.detail and key_id in verdict.detail


def test_unsigned_archives_are_refused_unless_allowed_and_say_what_to_do() -> None:
    with pytest.raises(UnsafeArchiveError, match="not signed") as unsigned:
        check(_sidecar(), _ring(TRUSTED))
    assert "FERRY_TRUSTED_KEYS" in str(unsigned.value) and "--allow-unsigned" in str(unsigned.value)
    with pytest.raises(UnsafeArchiveError, match="--allow-unverified --allow-unsigned"):
        check(None, _ring(TRUSTED))  # no sidecar at all: a Podman export, or a stray object
    assert not check(_sidecar(), _ring(TRUSTED), allow_unsigned=True).trusted
    assert "UNSIGNED" in check(None, Keyring(), allow_unsigned=True).detail


def test_an_hmac_signature_from_an_older_ferry_counts_as_unsigned() -> None:
    legacy = replace(_sidecar(), signature="hmac-sha256:" + "ab" * 32)
    with pytest.raises(UnsafeArchiveError, match="HMAC signature from an older ferry"):
        check(legacy, _ring(TRUSTED))
    assert not check(legacy, _ring(TRUSTED), allow_unsigned=True).trusted


def test_a_key_not_in_the_keyring_is_refused_unless_allowed() -> None:
    foreign = sign(_sidecar(), ATTACKER)
    with pytest.raises(UnsafeArchiveError, match="not in this host's keyring") as refused:
        check(foreign, _ring(TRUSTED))
    assert "host1" in str(refused.value) and "--allow-unsigned" in str(refused.value)
    with pytest.raises(UnsafeArchiveError, match="keyring is empty"):
        check(foreign, Keyring())
    verdict = check(foreign, _ring(TRUSTED), allow_unsigned=True)
    assert not verdict.trusted and "NOT in this host's keyring" in verdict.detail


def test_tampered_sidecars_are_refused_even_with_allow_unsigned() -> None:
    signed = sign(_sidecar(), TRUSTED)
    manifest = replace(signed.manifest, mode="leave-running")
    for tampered in (replace(signed, sha256="0" * 64), replace(signed, size=1), replace(signed, manifest=manifest)):
        for allow in (False, True):
            with pytest.raises(IntegrityError, match="does not verify"):
                check(tampered, _ring(TRUSTED), allow_unsigned=allow)
    # The attacker's own signature carried over under the trusted key's id: the key id only picks the key.
    attacker_sig = sign(replace(signed, sha256="0" * 64), ATTACKER).signature.split()[2]
    forged = replace(signed, sha256="0" * 64, signature=" ".join([*signed.signature.split()[:2], attacker_sig]))
    with pytest.raises(IntegrityError, match="does not verify"):
        check(forged, _ring(TRUSTED))


def test_tampered_and_re_signed_by_another_key_is_refused() -> None:
    resigned = sign(replace(sign(_sidecar(), TRUSTED), sha256="0" * 64), ATTACKER)
    with pytest.raises(UnsafeArchiveError, match="not in this host's keyring"):
        check(resigned, _ring(TRUSTED))


@pytest.mark.parametrize(
    "signature",
    ["ed25519", "ed25519 SHA256:abc sig", "rsa SHA256:x y", "ed25519 " + "A" * 200, "\x00" * 10],
)
def test_malformed_signatures_are_refused_even_with_allow_unsigned(signature: str) -> None:
    for allow in (False, True):
        with pytest.raises(IntegrityError, match="malformed"):
            check(replace(_sidecar(), signature=signature), _ring(TRUSTED), allow_unsigned=allow)


def _pem(key: Ed25519PrivateKey, encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


def test_private_keys_load_from_pem_or_openssh_and_bad_ones_say_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    openssh = TRUSTED.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    for data in (_pem(TRUSTED), openssh):
        (tmp_path / "k").write_bytes(data)
        monkeypatch.setenv("FERRY_SIGNING_KEY", str(tmp_path / "k"))
        loaded = keys.signing_key()
        assert loaded is not None and signing.fingerprint(loaded.public_key()) == signing.fingerprint(
            TRUSTED.public_key()
        )
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cases = {
        b"garbage": "not a private key ferry can read",
        _pem(TRUSTED, serialization.BestAvailableEncryption(b"pass")): "passphrase",
        rsa_pem: "not an Ed25519 key",
        b"x" * (keys.MAX_KEY_FILE + 1): "larger than",
    }
    for data, match in cases.items():
        (tmp_path / "k").write_bytes(data)
        with pytest.raises(UsageError, match=match) as bad:
            keys.signing_key()
        assert "BEGIN" not in str(bad.value).replace("'-----BEGIN PRIVATE KEY-----'", "")


def test_a_signing_key_variable_that_names_no_file_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old_hmac_secret = os.urandom(32).hex()
    monkeypatch.setenv("FERRY_SIGNING_KEY", old_hmac_secret)
    with pytest.raises(UsageError, match="must be the path of an Ed25519 private key file") as bad:
        keys.signing_key()
    assert old_hmac_secret not in str(bad.value)


def test_no_signing_key_configured_means_unsigned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FERRY_SIGNING_KEY")
    monkeypatch.setattr(keys, "DEFAULT_SIGNING_KEY", tmp_path / "absent.key")
    assert keys.signing_key() is None


def _line(key: Ed25519PrivateKey, name: str) -> str:
    return PublicKey.of(key.public_key(), name).line()


def test_a_keyring_file_or_directory_of_openssh_lines_and_pem_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FERRY_SIGNING_KEY")
    monkeypatch.setattr(keys, "DEFAULT_SIGNING_KEY", tmp_path / "absent.key")
    third = Ed25519PrivateKey.generate()
    ring_file = tmp_path / "trusted-keys"
    ring_file.write_text(f"# snapshot hosts\n\n{_line(TRUSTED, 'host1')}\n  {_line(ATTACKER, 'host2')}  \n")
    monkeypatch.setenv("FERRY_TRUSTED_KEYS", str(ring_file))
    assert sorted(k.name for k in keys.trusted_keys().keys.values()) == ["host1", "host2"]

    folder = tmp_path / "trusted.d"
    folder.mkdir()
    (folder / "host1.pub").write_text(_line(TRUSTED, "host1") + "\n")
    (folder / "host3.pem").write_bytes(
        third.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (folder / ".hidden").write_text("not a key")
    monkeypatch.setenv("FERRY_TRUSTED_KEYS", str(folder))
    ring = keys.trusted_keys()
    assert sorted(k.name for k in ring.keys.values()) == ["host1", "host3"]
    assert check(sign(_sidecar(), third), ring).trusted


def test_this_hosts_own_key_is_trusted_without_a_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "own.key").write_bytes(_pem(TRUSTED))
    monkeypatch.setenv("FERRY_SIGNING_KEY", str(tmp_path / "own.key"))
    monkeypatch.delenv("FERRY_TRUSTED_KEYS")
    monkeypatch.setattr(keys, "DEFAULT_TRUSTED_KEYS", tmp_path / "absent")
    assert check(sign(_sidecar(), TRUSTED), keys.trusted_keys()).trusted
    assert keys.trusted_keys(include_own=False).keys == {}


def test_malformed_keyrings_say_which_file_and_line_and_never_quote_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = tmp_path / "trusted-keys"
    monkeypatch.setenv("FERRY_TRUSTED_KEYS", str(ring))
    rsa = generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_line = rsa.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    good = _line(TRUSTED, "host1")
    cases = {
        f"{good}\nnot a key at all\n": "line 2 is not an Ed25519 public key",
        f"{rsa_line} host9\n": "line 1 is not an Ed25519 public key.*ssh-rsa",
        "ssh-ed25519 AAAAnotbase64!! host1\n": "line 1: the key's base64 does not decode",
        f"{good.rsplit(' ', 1)[0]} {'n' * 200}\n": "name must be printable text",
        _pem(TRUSTED).decode(): "holds a private key",
    }
    for text, match in cases.items():
        ring.write_text(text)
        with pytest.raises(UsageError, match=match) as bad:
            keys.trusted_keys()
        assert str(ring) in str(bad.value)
        assert "AAAA" not in str(bad.value) and "PRIVATE KEY-----\n" not in str(bad.value)
    ring.write_bytes(b"\xff\xfe binary")
    with pytest.raises(UsageError, match="not text"):
        keys.trusted_keys()
    monkeypatch.setenv("FERRY_TRUSTED_KEYS", str(tmp_path / "absent"))
    with pytest.raises(UsageError, match="cannot be read"):
        keys.trusted_keys()


def test_keygen_writes_a_private_key_only_root_reads_and_never_overwrites(tmp_path: Path) -> None:
    pair = keygen(tmp_path / "keys", "ferry@host1")
    assert pair.private.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    line = pair.public.read_text().strip()
    assert line.startswith("ssh-ed25519 ") and line.endswith(" ferry@host1")
    blob = base64.b64decode(line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert pair.key.fingerprint == f"SHA256:{digest}"  # what `ssh-keygen -lf signing.pub` prints
    loaded = signing.private_key_from(pair.private.read_bytes(), "test")
    assert signing.fingerprint(loaded.public_key()) == pair.key.fingerprint
    before = pair.private.read_bytes()
    with pytest.raises(UsageError, match="never overwrites"):
        keygen(tmp_path / "keys", "again")
    assert pair.private.read_bytes() == before
    with pytest.raises(UsageError, match="--name"):
        keygen(tmp_path / "other", "two words")


def test_doctor_warns_without_keys_and_fails_on_a_broken_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_SIGNING_KEY")
    monkeypatch.delenv("FERRY_TRUSTED_KEYS")
    monkeypatch.setattr(keys, "DEFAULT_SIGNING_KEY", tmp_path / "absent.key")
    monkeypatch.setattr(keys, "DEFAULT_TRUSTED_KEYS", tmp_path / "absent")
    none = doctor.check_signing()
    assert none.status == "warn"
    assert "no signing key" in none.detail and "no trusted keys" in none.detail and "ferry keygen" in none.fix

    pair = keygen(tmp_path / "keys", "ferry@host1")
    monkeypatch.setenv("FERRY_SIGNING_KEY", str(pair.private))
    only_key = doctor.check_signing()
    assert (
        only_key.status == "warn" and "no signing key" not in only_key.detail and "no trusted keys" in only_key.detail
    )
    monkeypatch.setenv("FERRY_TRUSTED_KEYS", str(pair.public))
    both = doctor.check_signing()
    assert both.status == "ok" and "ferry@host1" in both.detail

    pair.private.write_text("broken")
    broken = doctor.check_signing()
    assert not broken.ok and "not a private key" in broken.detail


def test_signature_round_trip_through_the_sidecar_file_format() -> None:
    signed = sign(_sidecar(), TRUSTED)
    raw = json.loads(signed.to_json())
    assert raw["signature"] == signed.signature
    raw["unknown_field"] = "ignored by ferry, so not covered"
    assert check(Sidecar.from_json(json.dumps(raw).encode()), _ring(TRUSTED)).trusted

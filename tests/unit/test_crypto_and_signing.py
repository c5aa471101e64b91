"""Encryption (chunked AES-GCM) and signing (HMAC over the sidecar) of archives."""

from __future__ import annotations

import io
import os
from dataclasses import replace

import pytest

from ferry.archive import crypto
from ferry.archive.envelope import open_plain
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import verify
from ferry.archive.signing import check, sign
from ferry.errors import IntegrityError, UnsafeArchiveError, UsageError
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
    import hashlib

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


def _sidecar() -> Sidecar:
    report = verify(io.BytesIO(Forge().bytes()))
    assert report.manifest is not None
    return Sidecar("a.tar.zst", report.archive_size, report.archive_sha256, "zstd", report.manifest)


def test_signed_sidecars_check_and_forgeries_do_not() -> None:
    key = b"k" * 40
    signed = sign(_sidecar(), key)
    check(signed, key)
    check(_sidecar(), None)  # no key configured: nothing to check
    with pytest.raises(UnsafeArchiveError, match="no signature"):
        check(_sidecar(), key)
    with pytest.raises(UnsafeArchiveError, match="no signature"):
        check(None, key)
    with pytest.raises(IntegrityError, match="signature does not match"):
        check(signed, b"x" * 40)
    with pytest.raises(IntegrityError, match="signature does not match"):
        check(replace(signed, sha256="0" * 64), key)

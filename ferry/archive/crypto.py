"""Optional client-side encryption of archives: AES-256-GCM in a chunked, streaming construction.

Checkpoint images hold process memory (passwords, keys, session tokens): with a key configured,
the bytes that leave the host are ciphertext. Layout of an encrypted archive::

    b"FERRYENC1" | salt (16 bytes) | chunk size (4 bytes, big-endian)      header, also the AAD
    then per chunk: AES-GCM(chunk) with nonce = 7 random prefix bytes | counter (4) | last (1)

The archive key is HKDF-SHA256(master key, salt), a fresh one per archive, so nonces never repeat
under one key. Every chunk is authenticated; the "last" flag in the nonce makes truncation and
reordering detectable. Decryption stops at the first chunk that does not authenticate.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ferry.archive.streams import Readable
from ferry.errors import IntegrityError, UsageError

MAGIC = b"FERRYENC1"
SALT_BYTES = 16
PREFIX_BYTES = 7
CHUNK = 1 << 20
TAG = 16
HEADER = len(MAGIC) + SALT_BYTES + PREFIX_BYTES + 4
SCHEME = "aes-256-gcm-stream-v1"
ENV = "FERRY_ENCRYPTION_KEY"


def parse_key(text: str, *, what: str = ENV) -> bytes:
    """A 32-byte key written as 64 hex digits or base64."""
    text = text.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == 32:
            return key
    raise UsageError(f"{what} must be a 32-byte key, as 64 hex digits or base64 (e.g. `openssl rand -hex 32`).")


def _derive(master: bytes, salt: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"ferry archive v1").derive(master)
    return AESGCM(key)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class Encryptor:
    """Writable stream: encrypts what is written into ``sink``; call :meth:`finish` at the end."""

    def __init__(self, sink: object, master: bytes) -> None:
        self._sink = sink
        salt, self._prefix = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES)
        self._header = MAGIC + salt + self._prefix + struct.pack(">I", CHUNK)
        self._aead = _derive(master, salt)
        self._buffer = bytearray()
        self._counter = 0
        self._sink.write(self._header)  # type: ignore[attr-defined]

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK:  # keep one chunk back: the last one is flagged
            self._emit(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self) -> None:
        """Chunks go out as they fill; the tail waits for :meth:`finish`."""

    def finish(self) -> None:
        self._emit(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _emit(self, chunk: bytes, *, last: bool) -> None:
        nonce = _nonce(self._prefix, self._counter, last)
        self._sink.write(self._aead.encrypt(nonce, chunk, self._header))  # type: ignore[attr-defined]
        self._counter += 1


class Decryptor:
    """Readable stream of the plaintext of an encrypted archive read from ``source``."""

    def __init__(self, source: Readable, master: bytes) -> None:
        self._source = source
        header = _read_exact(source, HEADER)
        if not header.startswith(MAGIC):
            raise IntegrityError("The archive is not encrypted the way ferry encrypts (bad header).")
        salt = header[len(MAGIC) : len(MAGIC) + SALT_BYTES]
        self._prefix = header[len(MAGIC) + SALT_BYTES : len(MAGIC) + SALT_BYTES + PREFIX_BYTES]
        (self._chunk,) = struct.unpack(">I", header[-4:])
        if not 0 < self._chunk <= 64 << 20:
            raise IntegrityError("The encrypted archive's header names an impossible chunk size.")
        self._header = header
        self._aead = _derive(master, salt)
        self._counter = 0
        self._plain = b""
        self._done = False
        # Read one sealed chunk ahead: a chunk is the last one exactly when nothing follows it.
        self._next = _read_exact(source, self._chunk + TAG, allow_short=True)

    def read(self, size: int = -1, /) -> bytes:
        while not self._done and (size < 0 or len(self._plain) < size):
            self._open_next()
        if size < 0:
            out, self._plain = self._plain, b""
        else:
            out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def _open_next(self) -> None:
        sealed = self._next
        self._next = _read_exact(self._source, self._chunk + TAG, allow_short=True) if sealed else b""
        last = not self._next
        if not sealed:
            raise IntegrityError("The encrypted archive ends before its last chunk: it is truncated.")
        try:
            plain = self._aead.decrypt(_nonce(self._prefix, self._counter, last), sealed, self._header)
        except InvalidTag as exc:
            raise IntegrityError(
                "The archive cannot be decrypted: wrong FERRY_ENCRYPTION_KEY, or it was tampered with or truncated."
            ) from exc
        self._counter += 1
        self._plain += plain
        self._done = last


def _read_exact(source: Readable, n: int, *, allow_short: bool = False) -> bytes:
    data = b""
    while len(data) < n:
        chunk = source.read(n - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) < n and not allow_short:
        raise IntegrityError("The encrypted archive is truncated (header incomplete).")
    return data

"""Open a stored archive for reading whatever its envelope: plain, or encrypted by ferry.

Yields the plaintext stream and the sidecar as the reader must see it (sizes and sha256 of the
plaintext). For encrypted archives the ciphertext's own size and sha256 are checked against the
store's record once the stream has been read to its end (:meth:`Opened.check_stored`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ferry.archive.crypto import MAGIC, Decryptor
from ferry.archive.manifest import Sidecar
from ferry.archive.streams import HashingReader, Readable, drain
from ferry.errors import IntegrityError, UsageError


@dataclass
class Opened:
    plain: Readable
    sidecar: Sidecar | None
    _stored: HashingReader | None = None
    _record: Sidecar | None = None

    def check_stored(self) -> None:
        if self._stored is None or self._record is None:
            return
        drain(self._stored)
        if (self._stored.size, self._stored.hexdigest()) != (self._record.size, self._record.sha256):
            raise IntegrityError("The stored (encrypted) archive does not match the store's size and sha256 record.")


class _Peeked:
    def __init__(self, head: bytes, source: Readable) -> None:
        self._head, self._source = head, source

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._source.read(size)
        out = self._head if size < 0 else self._head[:size]
        self._head = self._head[len(out) :]
        if size < 0 or len(out) < size:  # a full read, as callers that sniff headers expect
            out += self._source.read(-1 if size < 0 else size - len(out))
        return out


def open_plain(source: Readable, sidecar: Sidecar | None, key: bytes | None) -> Opened:
    head = source.read(len(MAGIC))
    stream = _Peeked(head, source)
    encrypted = head == MAGIC or bool(sidecar and sidecar.encryption)
    if not encrypted:
        return Opened(stream, sidecar)
    if key is None:
        raise UsageError(
            "The archive is encrypted. Set FERRY_ENCRYPTION_KEY (or FERRY_ENCRYPTION_KEY_BLOCK) to the key it was "
            "written with, and run the restore again."
        )
    stored = HashingReader(stream)
    plain_view = replace(sidecar, size=sidecar.plain_size, sha256=sidecar.plain_sha256) if sidecar else None
    return Opened(Decryptor(stored, key), plain_view, stored, sidecar)

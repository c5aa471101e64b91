"""Optional signing of archives: HMAC-SHA256 over the sidecar (manifest + archive size and sha256).

The sidecar already binds everything: the manifest lists every member's sha256, and the sidecar
adds the sha256 of the stored bytes. Signing it with a key only the operator's hosts hold means an
archive written by anyone else — someone with write access to the bucket but not the key — is
refused. HMAC (one shared secret) was chosen over Ed25519 for having nothing to install and one
key to manage; the hosts that restore must hold the same key as the hosts that snapshot.

With ``FERRY_SIGNING_KEY`` set (any string of 32 or more characters, e.g. `openssl rand -hex 32`),
snapshots are signed and restores refuse archives whose signature is missing or wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace

from ferry.archive.manifest import Sidecar
from ferry.errors import IntegrityError, UnsafeArchiveError

ENV = "FERRY_SIGNING_KEY"
PREFIX = "hmac-sha256:"
MIN_KEY_CHARS = 32


def _canonical(sidecar: Sidecar) -> bytes:
    body = replace(sidecar, signature="").as_dict()
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(sidecar: Sidecar, key: bytes) -> Sidecar:
    digest = hmac.new(key, _canonical(sidecar), hashlib.sha256).hexdigest()
    return replace(sidecar, signature=PREFIX + digest)


def check(sidecar: Sidecar | None, key: bytes | None) -> None:
    """Refuse unsigned or wrongly signed archives when a key is configured."""
    if key is None:
        return
    if sidecar is None or not sidecar.signature:
        raise UnsafeArchiveError(
            f"{ENV} is set, so only signed archives are restored, and this one carries no signature "
            "(written without the key, or not by ferry)."
        )
    expected = sign(sidecar, key).signature
    if not hmac.compare_digest(expected, sidecar.signature):
        raise IntegrityError(
            f"The archive's signature does not match {ENV}: it was written with another key, or altered."
        )

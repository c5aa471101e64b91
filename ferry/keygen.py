"""``ferry keygen``: a new Ed25519 key pair for a snapshot host. Never overwrites a key."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ferry.archive.signing import PublicKey
from ferry.errors import UsageError
from ferry.keys import DEFAULT_SIGNING_KEY, DEFAULT_TRUSTED_KEYS, SIGNING_ENV, TRUSTED_ENV

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    key: PublicKey


def default_name() -> str:
    return f"ferry@{socket.gethostname().split('.')[0] or 'host'}"


def keygen(out: Path, name: str) -> KeyPair:
    """Write ``out/signing.key`` (mode 0600) and ``out/signing.pub``; refuse if either exists."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable() or any(c.isspace() for c in name):
        raise UsageError("The key's --name must be 1 to 100 printable characters without spaces, e.g. ferry@host1.")
    private, public = out / PRIVATE_NAME, out / PUBLIC_NAME
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path} exists; ferry keygen never overwrites a key. Choose another --out directory.")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"Cannot create {out}: {exc.strerror}.") from None
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = PublicKey.of(key.public_key(), name)
    _write_new(private, pem, 0o600)
    try:
        _write_new(public, (pub.line() + "\n").encode(), 0o644)
    except UsageError:
        private.unlink()
        raise
    return KeyPair(private, public, pub)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise UsageError(f"{path} exists; ferry keygen never overwrites a key.") from None
    except OSError as exc:
        raise UsageError(f"Cannot write {path}: {exc.strerror}.") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)  # whatever the umask


def instructions(pair: KeyPair) -> str:
    """What to do next, for the operator."""
    signing = (
        f"This host signs its snapshots with it ({SIGNING_ENV} defaults to {DEFAULT_SIGNING_KEY})."
        if pair.private == DEFAULT_SIGNING_KEY
        else f"To sign this host's snapshots with it: export {SIGNING_ENV}={pair.private}"
    )
    return (
        f"private key: {pair.private} (mode 0600; it never leaves this host)\n"
        f"public key:  {pair.public}\n"
        f"key id:      {pair.key.fingerprint} ({pair.key.name})\n\n"
        f"{signing}\n"
        "On every host that restores this host's archives, add the public key to the keyring\n"
        f"({TRUSTED_ENV}, default {DEFAULT_TRUSTED_KEYS}: a file of such lines, or a directory of .pub files):\n\n"
        f"    mkdir -p {DEFAULT_TRUSTED_KEYS.parent} && echo '{pair.key.line()}' >> {DEFAULT_TRUSTED_KEYS}\n"
    )

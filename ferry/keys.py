"""Where keys come from. Keys are never logged, put in artifacts, errors or parameters.

- Encryption: ``FERRY_ENCRYPTION_KEY``, or a Prefect Secret block named by ``FERRY_ENCRYPTION_KEY_BLOCK``.
- Signing (snapshot hosts): the Ed25519 private key file named by ``FERRY_SIGNING_KEY``, or the key
  text held by the Prefect Secret block named by ``FERRY_SIGNING_KEY_BLOCK``, or else
  ``/etc/ferry/signing.key`` when it exists. No key: snapshots are unsigned.
- Trusted keys (restoring hosts): the file or directory named by ``FERRY_TRUSTED_KEYS``, else
  ``/etc/ferry/trusted-keys`` when it exists; plus this host's own public key, when it signs.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ferry.archive import crypto
from ferry.archive.signing import Keyring, PublicKey, private_key_from, public_keys_from
from ferry.errors import UsageError

SIGNING_ENV = "FERRY_SIGNING_KEY"
TRUSTED_ENV = "FERRY_TRUSTED_KEYS"
DEFAULT_SIGNING_KEY = Path("/etc/ferry/signing.key")
DEFAULT_TRUSTED_KEYS = Path("/etc/ferry/trusted-keys")
#: A key file is a few hundred bytes; a keyring a few lines per host.
MAX_KEY_FILE = 1 << 20
MAX_KEYRING_FILES = 1000


def _block(variable: str) -> str:
    block = os.environ.get(f"{variable}_BLOCK", "").strip()
    if not block:
        return ""
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(block, _sync=True).get()).strip()  # type: ignore[call-arg, union-attr]
    except ValueError as exc:
        raise UsageError(f"{variable}_BLOCK names the Prefect Secret block {block!r}, which does not exist.") from exc


def _secret(variable: str) -> str:
    return os.environ.get(variable, "").strip() or _block(variable)


def _read(path: Path, where: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise UsageError(f"{where} cannot be read: {exc.strerror}.") from None
    if len(data) > MAX_KEY_FILE:
        raise UsageError(f"{where} is larger than {MAX_KEY_FILE} bytes: not a key file.")
    return data


def private_key_from_file(path: Path, where: str = "") -> Ed25519PrivateKey:
    where = where or str(path)
    return private_key_from(_read(path, where), where)


def signing_key() -> Ed25519PrivateKey | None:
    """This host's private key, or None when it has none (its snapshots are then unsigned)."""
    named = os.environ.get(SIGNING_ENV, "").strip()
    if named:
        path = Path(named)
        if not path.is_file():
            # Never echo the value: before Ed25519, this variable held an HMAC secret.
            raise UsageError(
                f"{SIGNING_ENV} must be the path of an Ed25519 private key file (`ferry keygen` writes one), and "
                "it names no file. (It used to hold an HMAC secret; that scheme is gone.)"
            )
        return private_key_from_file(path, f"{SIGNING_ENV} file {path}")
    text = _block(SIGNING_ENV)
    if text:
        return private_key_from(text.encode(), f"the Prefect Secret block named by {SIGNING_ENV}_BLOCK")
    if DEFAULT_SIGNING_KEY.exists():
        return private_key_from_file(DEFAULT_SIGNING_KEY)
    return None


def trusted_keys(include_own: bool = True) -> Keyring:
    """The keyring: the keys whose archives this host restores, and (``include_own``) this host's own."""
    named = os.environ.get(TRUSTED_ENV, "").strip()
    path = Path(named) if named else DEFAULT_TRUSTED_KEYS
    what = f"{TRUSTED_ENV} ({path})" if named else str(path)
    keys: list[PublicKey] = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
        if len(files) > MAX_KEYRING_FILES:
            raise UsageError(f"{what} holds more than {MAX_KEYRING_FILES} files: not a keyring.")
        for file in files:
            keys += public_keys_from(_read(file, f"{what}: {file.name}"), f"{what}: {file.name}", file.stem)
    elif path.exists() or named:
        keys += public_keys_from(_read(path, what), what, path.name)
    ring = Keyring()
    for key in keys:
        ring = ring.with_key(key)
    own = signing_key() if include_own else None
    if own is not None:
        ring = ring.with_key(PublicKey.of(own.public_key(), "this host's signing key"))
    return ring


def encryption_key() -> bytes | None:
    text = _secret(crypto.ENV)
    return crypto.parse_key(text) if text else None

"""Where signing and encryption keys come from: an environment variable, or a Prefect Secret
block named by ``<VARIABLE>_BLOCK``. Keys are never logged, put in artifacts or in parameters."""

from __future__ import annotations

import os

from ferry.archive import crypto, signing
from ferry.errors import UsageError


def _secret(variable: str) -> str:
    value = os.environ.get(variable, "").strip()
    if value:
        return value
    block = os.environ.get(f"{variable}_BLOCK", "").strip()
    if not block:
        return ""
    from prefect.blocks.system import Secret

    try:
        return str(Secret.load(block, _sync=True).get()).strip()  # type: ignore[call-arg, union-attr]
    except ValueError as exc:
        raise UsageError(f"{variable}_BLOCK names the Prefect Secret block {block!r}, which does not exist.") from exc


def signing_key() -> bytes | None:
    text = _secret(signing.ENV)
    if not text:
        return None
    if len(text) < signing.MIN_KEY_CHARS:
        raise UsageError(f"{signing.ENV} is too short: use at least {signing.MIN_KEY_CHARS} characters.")
    return text.encode()


def encryption_key() -> bytes | None:
    text = _secret(crypto.ENV)
    return crypto.parse_key(text) if text else None

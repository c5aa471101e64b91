"""Storage options for fsspec: non-secret settings plus credentials kept out of sight.

Credentials come from the places each fsspec backend already reads (environment variables,
config files, instance roles), from ``FERRY_STORAGE_OPTIONS`` (JSON, for the CLI), or from a
Prefect Secret block named by the flow's ``storage_secret`` parameter (JSON object). Flow
parameters are shown in the Prefect UI, so secrets never travel as parameters themselves.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ferry.errors import UsageError

ENV = "FERRY_STORAGE_OPTIONS"


def from_env() -> dict[str, Any]:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{ENV} must be a JSON object of fsspec storage options: {exc.msg}.") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{ENV} must be a JSON object of fsspec storage options.")
    return value


def resolve(options: dict[str, Any] | None, secret_block: str | None = None) -> dict[str, Any]:
    """Merge: environment, then the flow's options, then the Secret block's (which wins)."""
    merged = {**from_env(), **(options or {})}
    if secret_block:
        from prefect.blocks.system import Secret

        try:
            secret = Secret.load(secret_block, _sync=True).get()  # type: ignore[call-arg, union-attr]
        except ValueError as exc:
            raise UsageError(f"There is no Prefect Secret block named {secret_block!r}.") from exc
        if isinstance(secret, str):
            try:
                secret = json.loads(secret)
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"The Prefect Secret block {secret_block!r} must hold a JSON object of storage options."
                ) from exc
        if not isinstance(secret, dict):
            raise UsageError(f"The Prefect Secret block {secret_block!r} must hold a JSON object.")
        merged.update(secret)
    return merged

"""Storage options for fsspec: non-secret settings plus credentials kept out of sight.

Credentials come from the places each fsspec backend already reads (environment variables,
config files, instance roles), from ``FERRY_STORAGE_OPTIONS`` (JSON, for the CLI), or from a
Prefect block named by the flow's ``storage_secret`` parameter: a Secret block (``NAME`` or
``secret/NAME``, a JSON object of fsspec options), or the credential blocks Prefect users already
have, ``aws-credentials/NAME`` (prefect-aws ``AwsCredentials``) and ``gcp-credentials/NAME``
(prefect-gcp ``GcpCredentials``). Those two are read as block documents through the Prefect
client by their type slug (the Prefect server registers both types), so neither prefect-aws nor
prefect-gcp needs to be installed. Flow parameters are shown in the Prefect UI, so secrets never
travel as parameters themselves. Prefect is imported only when a block is named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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
    """Merge: environment, then the flow's options, then the named block's (which wins; its
    ``client_kwargs`` are merged into the others' rather than replacing them)."""
    merged = {**from_env(), **(options or {})}
    if secret_block:
        slug, _, name = secret_block.rpartition("/")
        if slug in ("", "secret"):
            merged.update(_secret(name))
        elif slug in BLOCK_OPTIONS:
            found = BLOCK_OPTIONS[slug](_block_data(slug, name))
            client_kwargs = {**merged.get("client_kwargs", {}), **found.pop("client_kwargs", {})}
            merged.update(found)
            if client_kwargs:
                merged["client_kwargs"] = client_kwargs
        else:
            raise UsageError(
                f"storage_secret {secret_block!r}: name a Secret block (NAME or secret/NAME), "
                f"{' or '.join(f'{s}/NAME' for s in BLOCK_OPTIONS)}."
            )
    return merged


def _secret(block: str) -> dict[str, Any]:
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(block, _sync=True).get()  # type: ignore[call-arg, union-attr]
    except ValueError as exc:
        raise UsageError(f"There is no Prefect Secret block named {block!r}.") from exc
    if isinstance(secret, str):
        try:
            secret = json.loads(secret)
        except json.JSONDecodeError as exc:
            raise UsageError(f"The Prefect Secret block {block!r} must hold a JSON object of storage options.") from exc
    if not isinstance(secret, dict):
        raise UsageError(f"The Prefect Secret block {block!r} must hold a JSON object.")
    return secret


def _block_data(slug: str, name: str) -> dict[str, Any]:
    """A block document's fields, secrets included, by block type slug and name."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            doc = client.read_block_document_by_name(name, block_type_slug=slug, include_secrets=True)
    except ObjectNotFound as exc:
        raise UsageError(f"There is no Prefect {slug} block named {name!r}.") from exc
    return dict(doc.data)


def aws_options(data: dict[str, Any]) -> dict[str, Any]:
    """s3fs options from an AwsCredentials block's fields."""
    options: dict[str, Any] = {}
    for field, option in (
        ("aws_access_key_id", "key"),
        ("aws_secret_access_key", "secret"),
        ("aws_session_token", "token"),
        ("profile_name", "profile"),
    ):
        if data.get(field):
            options[option] = data[field]
    client_kwargs: dict[str, Any] = {}
    if data.get("region_name"):
        client_kwargs["region_name"] = data["region_name"]
    params = data.get("aws_client_parameters") or {}
    if params.get("endpoint_url"):
        client_kwargs["endpoint_url"] = params["endpoint_url"]
    if params.get("verify_cert_path"):
        client_kwargs["verify"] = params["verify_cert_path"]
    elif params.get("verify") is False:
        client_kwargs["verify"] = False
    if params.get("use_ssl") is False:
        options["use_ssl"] = False
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def gcp_options(data: dict[str, Any]) -> dict[str, Any]:
    """gcsfs options from a GcpCredentials block's fields."""
    options: dict[str, Any] = {}
    info = data.get("service_account_info")
    if isinstance(info, str) and info.strip():
        try:
            info = json.loads(info)
        except json.JSONDecodeError as exc:
            raise UsageError("The GcpCredentials block's service_account_info is not JSON.") from exc
    if info:
        options["token"] = info
    elif data.get("service_account_file"):
        options["token"] = str(data["service_account_file"])
    if data.get("project"):
        options["project"] = data["project"]
    return options


#: Prefect block type slug -> the fsspec options its fields give.
BLOCK_OPTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "aws-credentials": aws_options,
    "gcp-credentials": gcp_options,
}

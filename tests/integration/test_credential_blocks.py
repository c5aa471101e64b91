"""Store credentials from the Prefect blocks users already have: prefect-aws ``AwsCredentials`` and
prefect-gcp ``GcpCredentials``, read by type slug from a real Prefect server (which registers both
types; neither package is installed), against moto S3 with IAM enforced and the GCS emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentCreate

from ferry.errors import AccessDeniedError, UsageError
from storage.options import resolve
from storage.ref import StoreRef
from tests.servers import S3Server, moto_server

pytestmark = [pytest.mark.server, pytest.mark.usefixtures("prefect_harness")]


def make_block(slug: str, data: dict[str, Any]) -> str:
    """A block document as the Prefect UI creates it: of the server's registered type and schema."""
    name = f"b-{uuid.uuid4().hex[:10]}"
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug(slug)
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
        assert schema is not None, f"the server registers no schema for {slug}"
        client.create_block_document(
            BlockDocumentCreate(name=name, data=data, block_type_id=block_type.id, block_schema_id=schema.id)
        )
    return f"{slug}/{name}"


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[S3Server, str, str]]:
    """moto with IAM enforced after the set-up calls; yields the server and a user's real key pair."""
    import boto3

    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="4") as server:
        login = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1", **login)
        iam.create_user(UserName="ferry")
        iam.put_user_policy(
            UserName="ferry",
            PolicyName="s3",
            PolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
        )
        key = iam.create_access_key(UserName="ferry")["AccessKey"]
        server.make_bucket("blocked", key["AccessKeyId"], key["SecretAccessKey"])
        yield server, key["AccessKeyId"], key["SecretAccessKey"]


def test_an_aws_credentials_block_opens_the_store(guarded: tuple[S3Server, str, str]) -> None:
    server, key_id, secret = guarded
    block = make_block(
        "aws-credentials",
        {
            "aws_access_key_id": key_id,
            "aws_secret_access_key": secret,
            "region_name": "us-east-1",
            "aws_client_parameters": {"endpoint_url": server.endpoint},
        },
    )
    ref = StoreRef("s3://blocked/ferry", None, block)
    ref.open().check_writable()
    assert ref.options()["client_kwargs"] == {"region_name": "us-east-1", "endpoint_url": server.endpoint}

    wrong = make_block(
        "aws-credentials",
        {"aws_access_key_id": key_id, "aws_secret_access_key": "not-the-secret", "region_name": "us-east-1"},
    )
    # The endpoint from the flow's options stays: the block's client_kwargs are merged into them.
    endpoint = {"client_kwargs": {"endpoint_url": server.endpoint}}
    with pytest.raises(AccessDeniedError, match="s3://blocked/ferry") as info:
        StoreRef("s3://blocked/ferry", endpoint, wrong).open().check_writable()
    assert "not-the-secret" not in str(info.value)


def test_a_gcp_credentials_block_gives_gcsfs_its_project_and_token(gcs: dict[str, str]) -> None:
    bucket = f"ferry-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("gcs", **gcs).mkdir(bucket)
    # The emulator checks no token: the block's project reaches gcsfs and the store works with it.
    block = make_block("gcp-credentials", {"project": "ferry-test"})
    ref = StoreRef(f"gs://{bucket}/ferry", dict(gcs), block)
    assert ref.options()["project"] == "ferry-test"
    ref.open().check_writable()
    # A service account key becomes gcsfs's token (the dict itself, never a file on disk).
    info = {"type": "service_account", "client_email": "ferry@p.iam.gserviceaccount.com", "private_key": "k"}
    keyed = make_block("gcp-credentials", {"service_account_info": info, "project": "p"})
    assert resolve(None, keyed)["token"] == info


def test_unknown_blocks_and_block_types_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="no Prefect aws-credentials block named 'nope'"):
        resolve(None, "aws-credentials/nope")
    with pytest.raises(UsageError, match="name a Secret block"):
        resolve(None, "azure-credentials/x")

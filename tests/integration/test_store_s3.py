"""The store contract against a real S3 API: a moto server on 127.0.0.1 (as s3fs tests do)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ferry.errors import AccessDeniedError
from storage.store import ArchiveStore
from tests.integration.test_store_file import _flip_middle_byte
from tests.servers import S3Server, moto_server
from tests.store_contract import StoreContract

pytestmark = pytest.mark.server


class TestS3Store(StoreContract):
    @pytest.fixture
    def storage_options(self, s3: S3Server) -> dict[str, Any]:
        return s3.options()

    @pytest.fixture
    def store_url(self, s3: S3Server) -> str:
        bucket = f"ferry-{uuid.uuid4().hex[:12]}"
        s3.make_bucket(bucket)
        return f"s3://{bucket}/nightly"

    @pytest.fixture
    def missing_url(self) -> str:
        return f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/nightly"

    @pytest.fixture
    def corrupt(self):  # type: ignore[no-untyped-def]
        return _flip_middle_byte


def test_wrong_credentials_are_refused_at_once() -> None:
    """moto with IAM auth enforced after the set-up calls: bad keys get AccessDenied, no retry."""
    import boto3

    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="4") as server:
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        iam.create_user(UserName="ferry")
        iam.put_user_policy(
            UserName="ferry",
            PolicyName="s3",
            PolicyDocument=('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'),
        )
        key = iam.create_access_key(UserName="ferry")["AccessKey"]
        good = server.options(key["AccessKeyId"], key["SecretAccessKey"])
        server.make_bucket("guarded", key["AccessKeyId"], key["SecretAccessKey"])
        ArchiveStore("s3://guarded/p", good).check_writable()

        bad = server.options(key["AccessKeyId"], "not-the-secret")
        with pytest.raises(AccessDeniedError, match="s3://guarded/p") as info:
            ArchiveStore("s3://guarded/p", bad).check_writable()
        assert "not-the-secret" not in str(info.value)

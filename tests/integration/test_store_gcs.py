"""The store contract against a GCS API: gcp-storage-emulator on 127.0.0.1, driven by gcsfs."""

from __future__ import annotations

import uuid
from typing import Any

import fsspec
import pytest

from tests.integration.test_store_file import _flip_middle_byte
from tests.store_contract import StoreContract

pytestmark = pytest.mark.server


class TestGCSStore(StoreContract):
    @pytest.fixture
    def storage_options(self, gcs: dict[str, str]) -> dict[str, Any]:
        return dict(gcs)

    @pytest.fixture
    def store_url(self, gcs: dict[str, str]) -> str:
        bucket = f"ferry-{uuid.uuid4().hex[:12]}"
        fsspec.filesystem("gcs", **gcs).mkdir(bucket)
        return f"gs://{bucket}/nightly"

    @pytest.fixture
    def missing_url(self) -> str:
        return f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/nightly"

    @pytest.fixture
    def corrupt(self):  # type: ignore[no-untyped-def]
        return _flip_middle_byte

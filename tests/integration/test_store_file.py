"""The store contract on a local directory (file:// URLs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage.store import ArchiveStore
from tests.store_contract import StoreContract


def _flip_middle_byte(store: ArchiveStore, url: str) -> None:
    path = url.split("://", 1)[-1]
    data = bytearray(store.fs.cat_file(path))
    data[len(data) // 2] ^= 0xFF
    store.fs.pipe_file(path, bytes(data))


class TestFileStore(StoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"file://{tmp_path}/store"

    @pytest.fixture
    def storage_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def missing_url(self, tmp_path: Path) -> str:
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where a directory should be")
        return f"file://{blocker}/store"

    @pytest.fixture
    def corrupt(self):  # type: ignore[no-untyped-def]
        return _flip_middle_byte

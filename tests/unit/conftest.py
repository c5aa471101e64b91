"""Fixtures of the task tests against the fake runtime: a container ``app`` with a rootfs diff
(one added file, one changed, one deleted), a local store, a staging directory for one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.runtime import Changes
from storage.ref import StoreRef
from tests.fakes import FakeRuntime


@pytest.fixture
def fake(tmp_path: Path) -> FakeRuntime:
    rt = FakeRuntime(tmp_path / "fake")
    rt.add(
        "app",
        files={"/data": None, "/data/new": b"added", "/etc": None, "/etc/conf": b"changed"},
        changes=Changes(added=("/data/new",), changed=("/etc", "/etc/conf"), deleted=("/etc/gone",)),
    )
    return rt


@pytest.fixture
def ref(tmp_path: Path) -> StoreRef:
    return StoreRef(f"file://{tmp_path}/store")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path

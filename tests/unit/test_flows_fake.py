"""The flows, wired end to end against the fake runtime (tests/fakes.py): real Prefect (a test
harness server), real archive stages and a real local store; only Podman/CRIU are faked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.runtime import Changes, installed
from flows.restore import restore
from flows.snapshot import snapshot
from storage.store import ArchiveStore
from tests.fakes import FakeRuntime

pytestmark = pytest.mark.usefixtures("prefect_harness", "staging")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRuntime]:
    rt = FakeRuntime(tmp_path / "fake")
    rt.add(
        "app", files={"/data": None, "/data/new": b"added"}, changes=Changes(added=("/data/new",), deleted=("/etc/x",))
    )
    with installed(rt):
        yield rt


def test_snapshot_then_restore(fake: FakeRuntime, tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    result = snapshot("app", store)
    assert result.url.startswith(store + "/app/")
    assert result.mode == "stop"
    assert fake.containers["app"].state == "exited"
    assert fake.names()[:1] == ["inspect"]
    assert "freeze" in fake.names() and "thaw" in fake.names()
    assert fake.names().index("diff") < fake.names().index("checkpoint") < fake.names().index("thaw")
    [entry] = ArchiveStore(store).archives("app")
    assert entry.url == result.url

    restored = restore(result.url, name="copy")
    assert fake.containers["copy"].state == "running"
    assert restored is not None

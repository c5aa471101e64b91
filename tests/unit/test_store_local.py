"""The archive store on a local file-system: atomic writes, listing only complete archives."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.archive.manifest import ContainerRef, Manifest, Sidecar, Source
from ferry.errors import AccessDeniedError, ArchiveNotFoundError, StoreError, UsageError
from storage.reading import download, read_sidecar
from storage.store import ArchiveStore


def _sidecar(name: str, created: str) -> Sidecar:
    manifest = Manifest(ContainerRef("app", "a" * 64), Source(host="h"), "stop", created)
    return Sidecar(name, 3, "0" * 64, "zstd", manifest)


def test_put_then_list_newest_first(tmp_path: Path) -> None:
    store = ArchiveStore(f"file://{tmp_path}")
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    for created in ("2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"):
        key = store.key_for("app", created, "h", "a" * 64, ".tar.zst")
        url = store.put_archive(src, key, _sidecar(key.rsplit("/", 1)[-1], created))
        assert url.startswith("file://") and url.endswith(".tar.zst")
    entries = store.archives()
    assert [e.sidecar.manifest.created[:7] for e in entries] == ["2026-02", "2026-01"]
    assert read_sidecar(entries[0].url) == entries[0].sidecar
    out = tmp_path / "out"
    assert download(entries[0].url, out) == 3 and out.read_bytes() == b"abc"


def test_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    store = ArchiveStore(str(tmp_path))
    with pytest.raises(RuntimeError, match="boom"), store.open_archive_writer("app/x.tar.zst") as sink:
        sink.write(b"partial")
        raise RuntimeError("boom")
    assert list((tmp_path / "app").iterdir()) == []


def test_archive_without_sidecar_is_not_listed(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "orphan.tar.zst").write_bytes(b"half an upload")
    assert ArchiveStore(str(tmp_path)).archives() == []
    assert read_sidecar(str(tmp_path / "app" / "orphan.tar.zst")) is None


def test_errors_name_the_url(tmp_path: Path) -> None:
    with pytest.raises(ArchiveNotFoundError, match="no archive at"):
        read_sidecar(f"file://{tmp_path}/none.tar.zst")
    with pytest.raises(UsageError, match="nosuch"):
        ArchiveStore("nosuch://bucket")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="file/store"):
        ArchiveStore(f"file://{blocker}/store").check_writable()


def test_permission_denied_is_its_own_error(tmp_path: Path) -> None:
    # sysfs refuses new directories even to root (EPERM), unlike a chmod-ed temp directory.
    with pytest.raises(AccessDeniedError, match="permission denied"):
        ArchiveStore("file:///sys/fs/ferry-test-store").check_writable()

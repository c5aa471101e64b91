"""Errors reported, not swallowed: a sidecar ferry cannot use is shown by `ferry ls` and refused by
`restore --latest`; a failed discard of an unpublished upload is logged with its URL."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ferry.archive.manifest import ContainerRef, Manifest, Sidecar, Source
from ferry.archive.writer import ArchiveDigest
from ferry.errors import ArchiveNotFoundError, UnsupportedArchiveError
from storage.ref import StoreRef
from storage.store import SIDECAR_SUFFIX, ArchiveStore
from tasks.archive import ArchiveResult
from tasks.locate import locate
from tasks.publish import discard

OLD, NEW = "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z"


def _manifest(created: str) -> Manifest:
    return Manifest(ContainerRef("app", "a" * 64), Source(host="h"), "stop", created)


def _put(store: ArchiveStore, tmp_path: Path, created: str) -> str:
    src = tmp_path / "src"
    src.write_bytes(b"abc")
    key = store.key_for("app", created, "h", "a" * 64, ".tar.zst")
    return store.put_archive(src, key, Sidecar(key.rsplit("/", 1)[-1], 3, "0" * 64, "zstd", _manifest(created)))


def _break(url: str) -> None:
    Path(url.removeprefix("file://") + SIDECAR_SUFFIX).write_bytes(b'{"not": "a sidecar"')


def test_listing_shows_what_it_cannot_use(tmp_path: Path) -> None:
    store = ArchiveStore(f"file://{tmp_path}")
    good, bad, gone = (_put(store, tmp_path, c) for c in (OLD, NEW, "2026-03-01T00:00:00.000Z"))
    _break(bad)
    Path(gone.removeprefix("file://")).unlink()

    entries, broken = store.listing()

    assert [e.url for e in entries] == [good] == [e.url for e in store.archives()]
    assert [b.url for b in broken] == [gone, bad]
    assert "archive is not" in broken[0].problem and "sidecar cannot be read" in broken[1].problem


def test_latest_refuses_a_newer_broken_snapshot_and_names_it(tmp_path: Path) -> None:
    store = ArchiveStore(f"file://{tmp_path}")
    older = _put(store, tmp_path, OLD)
    newer = _put(store, tmp_path, NEW)
    assert locate(StoreRef(f"file://{tmp_path}"), "app") == newer
    _break(newer)

    with pytest.raises(UnsupportedArchiveError, match="will not fall back") as refused:
        locate(StoreRef(f"file://{tmp_path}"), "app")

    assert newer in str(refused.value) and older not in str(refused.value)


def test_latest_passes_over_an_older_broken_one(tmp_path: Path) -> None:
    store = ArchiveStore(f"file://{tmp_path}")
    older = _put(store, tmp_path, OLD)
    newer = _put(store, tmp_path, NEW)
    _break(older)
    assert locate(StoreRef(f"file://{tmp_path}"), "app") == newer
    Path(newer.removeprefix("file://") + SIDECAR_SUFFIX).unlink()  # now nothing complete is left
    with pytest.raises(UnsupportedArchiveError, match=older.rsplit("/", 1)[-1]):
        locate(StoreRef(f"file://{tmp_path}"), "app")
    Path(older.removeprefix("file://") + SIDECAR_SUFFIX).unlink()
    with pytest.raises(ArchiveNotFoundError, match="no complete snapshot"):
        locate(StoreRef(f"file://{tmp_path}"), "app")


def _ferry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_ls_shows_a_broken_sidecar(tmp_path: Path) -> None:
    store = ArchiveStore(f"file://{tmp_path}")
    good = _put(store, tmp_path, OLD)
    bad = _put(store, tmp_path, NEW)
    _break(bad)

    listing = _ferry("ls", f"file://{tmp_path}")
    assert listing.returncode == 0, listing.stderr
    assert f"BROKEN {bad}: its sidecar cannot be read" in listing.stdout
    assert good in listing.stdout

    as_json = _ferry("ls", f"file://{tmp_path}", "--json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert [e["url"] for e in listed["archives"]] == [good]
    assert listed["broken"] == [{"url": bad, "problem": listed["broken"][0]["problem"]}]
    assert "its sidecar cannot be read" in listed["broken"][0]["problem"]


def test_a_failed_discard_is_logged_with_its_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "store"
    (blocker / "app" / "x.tar.zst" / "in-the-way").mkdir(parents=True)  # a directory cannot be removed as a file
    result = ArchiveResult(None, ArchiveDigest(3, "0" * 64, "zstd"), _manifest(OLD), key="app/x.tar.zst")

    with caplog.at_level(logging.WARNING, logger="ferry.upload"):
        discard(result, StoreRef(f"file://{blocker}"))  # never raises: the snapshot's own error is what counts

    assert f"{blocker}/app/x.tar.zst" in caplog.text and "Could not remove" in caplog.text

"""One contract for the archive store, run against every backend (fsspec's abstract-test style).

A backend's test module subclasses :class:`StoreContract` and provides the fixtures
``store_url`` (a fresh, empty location), ``storage_options``, ``missing_url`` (a location in a
bucket or root that does not exist) and ``corrupt`` (damages a stored object in place).
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ferry.archive.manifest import Sidecar
from ferry.archive.reader import verify
from ferry.errors import ArchiveError, ArchiveNotFoundError, IntegrityError, StoreError
from storage import store as store_module
from storage.reading import download, open_archive, read_sidecar
from storage.store import SIDECAR_SUFFIX, ArchiveStore
from tests.archive_forge import Forge


def stored_archive(
    store: ArchiveStore, tmp_path: Path, created: str = "2026-11-01T00:00:00.000Z", container: str = "app"
) -> tuple[str, bytes]:
    ref = {"name": container, "id": "a" * 64, "image_id": "f" * 64, "image_name": "img"}
    data = Forge(manifest_edit={"created": created, "container": ref}).bytes()
    report = verify(io.BytesIO(data))
    assert report.manifest is not None
    manifest = report.manifest
    key = store.key_for(container, created, "host1", "a" * 64, ".tar.zst")
    local = tmp_path / f"{container}-{created[:10]}.tar.zst"
    local.write_bytes(data)
    sidecar = Sidecar(key.rsplit("/", 1)[-1], len(data), report.archive_sha256, "zstd", manifest)
    return store.put_archive(local, key, sidecar), data


class StoreContract:
    def test_put_list_download_roundtrip(self, store_url: str, storage_options: dict[str, Any], tmp_path: Path) -> None:
        store = ArchiveStore(store_url, storage_options)
        store.check_writable()
        url, data = stored_archive(store, tmp_path)

        entries = store.archives()
        assert [e.url for e in entries] == [url]
        sidecar = read_sidecar(url, storage_options)
        assert sidecar == entries[0].sidecar
        out = tmp_path / "out"
        assert download(url, out, storage_options) == len(data)
        assert out.read_bytes() == data
        with open_archive(url, storage_options) as f:
            assert verify(f, sidecar=sidecar).archive_sha256 == sidecar.sha256  # type: ignore[union-attr]

    def test_exception_mid_stream_leaves_nothing(self, store_url: str, storage_options: dict[str, Any]) -> None:
        store = ArchiveStore(store_url, storage_options)
        chunk = b"x" * (1 << 20)
        with (
            pytest.raises(RuntimeError, match="injected"),
            store.open_archive_writer("app/a.tar.zst") as sink,
        ):
            for _ in range(20):  # more than one multipart part
                sink.write(chunk)
            raise RuntimeError("injected failure mid-upload")

        assert not store.fs.exists(f"{store.root}/app/a.tar.zst")
        assert store.archives() == []
        assert store.incomplete() == []

    def test_upload_without_sidecar_is_incomplete_not_listed(
        self, store_url: str, storage_options: dict[str, Any]
    ) -> None:
        store = ArchiveStore(store_url, storage_options)
        with store.open_archive_writer("app/b.tar.zst") as sink:
            sink.write(b"the process died before it wrote the sidecar")

        assert store.archives() == []
        assert [u.rsplit("/", 1)[-1] for u in store.incomplete()] == ["b.tar.zst"]
        with pytest.raises(ArchiveError):
            # a sidecar-less object is never taken for a ferry archive
            verify_url = store.url_of("app/b.tar.zst")
            with open_archive(verify_url, storage_options) as f:
                verify(f, sidecar=read_sidecar(verify_url, storage_options))

    def test_corrupted_object_fails_verification(
        self,
        store_url: str,
        storage_options: dict[str, Any],
        tmp_path: Path,
        corrupt: Callable[[ArchiveStore, str], None],
    ) -> None:
        store = ArchiveStore(store_url, storage_options)
        url, _ = stored_archive(store, tmp_path)
        corrupt(store, url)

        sidecar = read_sidecar(url, storage_options)
        with pytest.raises(IntegrityError), open_archive(url, storage_options) as f:
            verify(f, sidecar=sidecar)

    def test_missing_location_is_a_clear_error(self, missing_url: str, storage_options: dict[str, Any]) -> None:
        with pytest.raises(StoreError) as info:
            ArchiveStore(missing_url, storage_options).check_writable()
        assert missing_url.rsplit("://", maxsplit=1)[-1].split("/", maxsplit=1)[0] in str(info.value)
        with pytest.raises(ArchiveNotFoundError, match="no archive at"):
            read_sidecar(f"{missing_url}/app/x.tar.zst", storage_options)

    def test_prune_keeps_newest_and_respects_keep_and_age(
        self, store_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        store = ArchiveStore(store_url, storage_options)
        for day in ("01", "02", "03", "04"):
            stored_archive(store, tmp_path, created=f"2026-11-{day}T00:00:00.000Z")
        stored_archive(store, tmp_path, created="2026-01-01T00:00:00.000Z", container="lonely")
        now = datetime(2026, 11, 27, tzinfo=UTC)

        planned = store.prune(keep=2, dry_run=True, now=now)
        assert sorted(e.sidecar.manifest.created[:10] for e in planned) == ["2026-11-01", "2026-11-02"]
        assert len(store.archives()) == 5  # dry run deleted nothing

        aged = store.prune(older_than=timedelta(days=365), dry_run=True, now=now)
        assert aged == []
        every_old = store.prune(older_than=timedelta(days=1), now=now)
        # 'lonely' has one archive, months old: it is the newest, so it stays.
        assert {e.sidecar.manifest.container.name for e in every_old} == {"app"}
        left = store.archives()
        assert sorted((e.sidecar.manifest.container.name, e.sidecar.manifest.created[:10]) for e in left) == [
            ("app", "2026-11-04"),
            ("lonely", "2026-01-01"),
        ]
        assert store.incomplete() == []

    def test_listing_reads_sidecars_in_parallel_with_the_same_result(
        self, store_url: str, storage_options: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = ArchiveStore(store_url, storage_options)
        for container in ("web", "db", "cache"):
            for day in ("01", "02", "03"):
                stored_archive(store, tmp_path, created=f"2026-11-{day}T00:00:00.000Z", container=container)
        # Two with the same creation time: the URL breaks the tie, the same way every time.
        stored_archive(store, tmp_path, created="2026-11-03T00:00:00.000Z", container="twin")
        stored_archive(store, tmp_path, created="2026-11-03T00:00:00.000Z", container="twin2")
        # And broken ones: a sidecar without its archive, a sidecar that does not parse.
        gone, _ = stored_archive(store, tmp_path, created="2026-11-05T00:00:00.000Z", container="gone")
        store.fs.rm(store.fs._strip_protocol(gone))
        store.fs.makedirs(f"{store.root}/junk", exist_ok=True)
        with store.fs.open(f"{store.root}/junk/20261104T000000000Z-x.tar.zst{SIDECAR_SUFFIX}", "wb") as f:
            f.write(b"{not json")

        monkeypatch.setattr(store_module, "LISTING_THREADS", 1)
        one_by_one = store.listing()
        monkeypatch.setattr(store_module, "LISTING_THREADS", 16)
        # Proof of parallel reads: the first two sidecar reads wait for each other; read one at a
        # time, the first would wait alone and the barrier break.
        barrier = threading.Barrier(2, timeout=60)
        cat_file = store.fs.cat_file
        calls = itertools.count()

        def meeting(path: str, *args: Any, **kwargs: Any) -> Any:
            if next(calls) < 2:
                barrier.wait()
            return cat_file(path, *args, **kwargs)

        monkeypatch.setattr(store.fs, "cat_file", meeting)
        parallel = store.listing()
        monkeypatch.undo()

        assert parallel == one_by_one
        entries, broken = parallel
        assert len(entries) == 11
        keys = [(e.sidecar.manifest.created, e.url) for e in entries]
        assert keys == sorted(keys, reverse=True)
        assert [b.url.rsplit("/", 2)[-2] for b in broken] == ["junk", "gone"]
        assert store.listing() == parallel  # stable from one call to the next

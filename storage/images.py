"""Container images shipped next to the archives, so a fresh host can restore them.

Content-addressed by image id, once per store whatever the number of snapshots::

    <store>/_images/<image-id>.oci.tar.zst          podman save --format oci-archive, zstd
    <store>/_images/<image-id>.oci.tar.zst.image.json   its record: size and sha256

``_images`` cannot clash with a container's directory: Podman names start with a letter or
digit. As with archives, the record is written last and an image without one does not exist.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ferry.archive import safejson
from ferry.errors import IntegrityError, UnsupportedArchiveError, UsageError
from storage.fsio import CHUNK, copy_stream, translated, url_for_path
from storage.store import ArchiveStore

IMAGES_DIR = "_images"
SUFFIX = ".oci.tar.zst"
RECORD_SUFFIX = ".image.json"
_IMAGE_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    image_name: str
    size: int
    sha256: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ImageRecord:
        try:
            raw = safejson.loads(data, what="The image record in the store", max_bytes=1 << 20, max_depth=4)
            return cls(str(raw["image_id"]), str(raw["image_name"]), int(raw["size"]), str(raw["sha256"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise UnsupportedArchiveError(f"The image record in the store is malformed: {exc}.") from exc


def _key(image_id: str) -> str:
    image_id = image_id.removeprefix("sha256:")
    if not _IMAGE_ID.match(image_id):
        raise UsageError(f"{image_id!r} is not a full image id (64 hex digits).")
    return f"{IMAGES_DIR}/{image_id}{SUFFIX}"


def image_url(store: ArchiveStore, image_id: str) -> str:
    return store.url_of(_key(image_id))


def find_image(store: ArchiveStore, image_id: str) -> ImageRecord | None:
    """The store's record of an image, or None when the store does not hold it (completely)."""
    path = posixpath.join(store.root, _key(image_id))
    with translated("look for the image in", store.url):
        if not store.fs.exists(path + RECORD_SUFFIX) or not store.fs.exists(path):
            return None
        return ImageRecord.from_json(store.fs.cat_file(path + RECORD_SUFFIX))


def put_image(
    store: ArchiveStore, local: Path, image_id: str, image_name: str, on_bytes: Callable[[int], None] | None = None
) -> ImageRecord:
    """Upload a saved, compressed image (once) and then its record; ``on_bytes`` hears each chunk sent."""
    digest = hashlib.sha256()
    with local.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    record = ImageRecord(image_id.removeprefix("sha256:"), image_name, local.stat().st_size, digest.hexdigest())
    key = _key(image_id)
    with store.open_archive_writer(key) as sink, local.open("rb") as src:
        copy_stream(src, sink, on_bytes)
    path = posixpath.join(store.root, key + RECORD_SUFFIX)
    with translated("write the image record", url_for_path(store.fs, path)):
        store.fs.pipe_file(path, record.to_json())
    return record


def get_image(
    store: ArchiveStore, record: ImageRecord, dest: Path, on_bytes: Callable[[int], None] | None = None
) -> None:
    """Download an image and check it against its record before anyone loads it; ``on_bytes``
    hears each chunk received."""
    url = image_url(store, record.image_id)
    digest = hashlib.sha256()
    size = 0
    with (
        translated("download the image", url, wraps_caller=True),
        store.fs.open(posixpath.join(store.root, _key(record.image_id)), "rb") as src,
        dest.open("wb") as out,
    ):
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    if (size, digest.hexdigest()) != (record.size, record.sha256):
        dest.unlink(missing_ok=True)
        raise IntegrityError(f"The image {url} does not match its record's size and sha256: corrupted or replaced.")

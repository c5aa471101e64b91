"""Ship image (``--with-image``): put the container's image in the store, once.

Runs before the freeze: the image never changes under a running container, and a failure here
leaves the container untouched. Stores it only when the store does not hold that id yet.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from ferry import progress
from ferry.archive.compression import compressing
from ferry.runtime import Runtime, current
from storage.fsio import CHUNK
from storage.images import find_image, image_url, put_image
from storage.ref import StoreRef
from tasks.inspect import Subject


def ship_image(
    subject: Subject,
    ref: StoreRef,
    staging: Path,
    runtime: Runtime | None = None,
) -> str:
    """Returns the image's URL in the store (uploaded now or already there)."""
    runtime = runtime or current()
    store = ref.open()
    info = subject.info
    if find_image(store, info.image_id) is None:
        image = info.image_name or info.image_id[:12]
        with progress.stage("save-image", image):
            raw = staging / "image.oci.tar"
            runtime.save_image(info.image_id, raw)
            packed = staging / "image.oci.tar.zst"
            with raw.open("rb") as src, packed.open("wb") as out, compressing(out, "zstd") as sink:
                while chunk := src.read(CHUNK):
                    sink.write(chunk)
            raw.unlink()
        with progress.stage("upload-image", image, total=packed.stat().st_size) as stage:
            put_image(store, packed, info.image_id, info.image_name, on_bytes=stage.advance)
        packed.unlink()
    return image_url(store, info.image_id)


@task(name="ship-image", retries=2, retry_delay_seconds=[2, 10], persist_result=True)
def ship_image_task(subject: Subject, ref: StoreRef, staging: Path) -> str:
    return ship_image(subject, ref, staging)

"""Load image: make sure this host has the container's exact image.

Podman restores only onto the very same image id. When this host lacks it, the image shipped
with ``--with-image`` is fetched from the archive's store, checked against its record, and
loaded; when the store does not have it either, the operator is told what to do.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from ferry import progress
from ferry.errors import RestoreError
from ferry.runtime import Runtime, current
from storage.images import find_image, get_image, image_url
from storage.ref import StoreRef


def load_image(
    image_id: str,
    image_name: str,
    staging: Path,
    ref: StoreRef,  # the store the archive came from
    runtime: Runtime | None = None,
) -> str:
    """Returns how the image was found: "present" or the URL it was loaded from.

    The id and name come from the verified ``config.dump``, or, on the one-pass path, from the
    sidecar's manifest (checked against ``config.dump`` before Podman gets the archive)."""
    runtime = runtime or current()
    if image_id and runtime.image_exists(image_id):
        return "present"
    store = ref.open()
    record = find_image(store, image_id) if image_id else None
    if record is None:
        raise RestoreError(
            f"The container's image {image_name or '?'} (id {image_id[:12] or '?'}) is neither on "
            f"this host nor in the store {store.url}, and Podman needs that very image id to restore. Snapshot "
            "with --with-image to ship it, or copy it from a host that has it (`podman save IMAGE | podman load`)."
        )
    local = staging / "image.oci.tar.zst"
    image = image_name or image_id[:12]
    with progress.stage("download-image", image, total=record.size) as stage:
        get_image(store, record, local, on_bytes=stage.advance)
    with progress.stage("load-image", image):
        runtime.load_image(local)
    local.unlink()
    if image_name:
        # Saved by id (a tag may have moved since), so the name Podman restores by is set here.
        runtime.tag_image(image_id, image_name)
    if not runtime.image_exists(image_id):
        raise RestoreError(f"Loading {image_url(store, image_id)} did not produce image {image_id[:12]}.")
    return image_url(store, image_id)


@task(name="load-image", retries=1, retry_delay_seconds=5)
def load_image_task(image_id: str, image_name: str, staging: Path, ref: StoreRef) -> str:
    return load_image(image_id, image_name, staging, ref)

"""Publish: make the archive visible in the store by writing its (signed) sidecar last.

The archive stage already streamed the archive into the store under its final name, invisible
without a sidecar; this stage checks the object's size, signs the sidecar and writes it. An
archive staged on local disk instead (no streaming) is uploaded here first. ``discard`` removes
an archive that was streamed but never published, after a snapshot failed for good.
"""

from __future__ import annotations

import logging

from prefect import task
from prefect.cache_policies import NO_CACHE

from ferry import keys, progress
from ferry.archive.manifest import Sidecar
from ferry.archive.signing import sign
from ferry.faults import maybe_fail
from ferry.report import warn
from storage.ref import StoreRef
from tasks.archive import ArchiveResult, archive_key
from tasks.retry import transient

log = logging.getLogger("ferry.publish")
UNSIGNED_WARNING = (
    "This host has no signing key (FERRY_SIGNING_KEY, FERRY_SIGNING_KEY_BLOCK or /etc/ferry/signing.key), so "
    "the archive of {name} is UNSIGNED: restores will refuse it unless run with --allow-unsigned. Create a key "
    "with `ferry keygen` and add its public key to the restoring hosts' keyrings."
)


def publish(archive: ArchiveResult, ref: StoreRef) -> str:
    maybe_fail("publish")
    store = ref.open()
    manifest = archive.manifest
    key = archive.key or archive_key(store, manifest, archive.digest.compression)
    stored = archive.stored or archive.digest
    sidecar = Sidecar(
        archive=key.rsplit("/", 1)[-1],
        size=stored.size,
        sha256=stored.sha256,
        compression=archive.digest.compression,
        manifest=manifest,
        encryption=archive.encryption,
        plain_size=archive.digest.size if archive.encryption else 0,
        plain_sha256=archive.digest.sha256 if archive.encryption else "",
    )
    signing_key = keys.signing_key()
    if signing_key is not None:
        sidecar = sign(sidecar, signing_key)
    else:
        warn(log, UNSIGNED_WARNING.format(name=manifest.container.name))
    if archive.path is None:  # streamed into the store by the archive stage: publish it
        with progress.stage("publish", manifest.container.name) as stage:
            stage.note = "sidecar written"
            store.check_object(key, stored.size)
            store.commit_sidecar(key, sidecar)
            return store.url_of(key)
    description = f"upload of {manifest.container.name} to {store.url}"
    with progress.stage("publish", manifest.container.name, total=stored.size, artifact=description) as stage:
        return store.put_archive(archive.path, key, sidecar, on_bytes=stage.advance)


def discard(archive: ArchiveResult, ref: StoreRef) -> None:
    """Best effort, after a snapshot failed for good: remove an archive object that was streamed
    into the store but never published (it is invisible without its sidecar anyway). A failure
    is logged, not raised: the snapshot's own error is the one to report."""
    if not archive.key:
        return
    url = ref.url
    try:
        store = ref.open()
        url = store.url_of(archive.key)
        store.discard(archive.key)
    except Exception as exc:  # reported, never raised: the snapshot's own failure is what the caller sees
        warn(
            log,
            f"Could not remove the unpublished archive {url} ({type(exc).__name__}: {exc}); "
            "it is invisible without its sidecar, and `ferry ls --all` lists it for removal.",
        )


@task(name="discard-unpublished", retries=0, cache_policy=NO_CACHE)
def discard_task(archive: ArchiveResult, ref: StoreRef) -> None:
    discard(archive, ref)


@task(name="publish", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient, persist_result=True)
def publish_task(archive: ArchiveResult, ref: StoreRef) -> str:
    return publish(archive, ref)

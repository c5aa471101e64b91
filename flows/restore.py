"""Restore flow: [locate | get ready -> await archive] -> sidecar -> [load image] -> receive -> CRIU restore.

Receive is one pass from the store to the tar Podman imports (download, decrypt, decompress,
verify, rewrite). An archive without a sidecar naming its image (a Podman export) goes
sidecar -> download -> verify -> [load image] -> prepare import -> CRIU restore instead. The
second way in is a migration's hand-off (:mod:`tasks.handoff`): the restore gets ready and waits
for the archive's URL."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from ferry.errors import UsageError
from ferry.options import DEFAULT_RESTORE_TIMEOUT_S, check_rename, restore_options
from ferry.staging import new_run_dir, remove_run_dir
from storage.default import store_url
from storage.ref import StoreRef, store_of
from tasks.download import download_task
from tasks.handoff import await_archive_task, get_ready_task
from tasks.load_image import load_image_task
from tasks.locate import locate_task
from tasks.prepare_import import prepare_import_task
from tasks.receive import receive_task
from tasks.restore import Restored, restore_task
from tasks.sidecar import sidecar_task
from tasks.verify import verify_task

#: The whole run (receive, restore); the CRIU restore itself has its own `timeout_seconds`.
RESTORE_FLOW_TIMEOUT_S = 6 * 3600


@flow(name="ferry-restore", log_prints=True, persist_result=True, timeout_seconds=RESTORE_FLOW_TIMEOUT_S)
def restore(
    archive: str = "",
    name: str | None = None,
    latest: str | None = None,
    allow_unverified: bool = False,
    allow_unsigned: bool = False,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
    tcp_established: bool | None = None,
    tcp_close: bool | None = None,
    file_locks: bool = True,
    ignore_static_ip: bool = True,
    ignore_static_mac: bool = True,
    publish: list[str] | None = None,
    timeout_seconds: Annotated[int, Field(ge=1)] = DEFAULT_RESTORE_TIMEOUT_S,
    handoff: str = "",
) -> Restored:
    """Restore a container on this host from an archive.

    Args:
        archive: URL of the archive to restore; with `latest`, the URL of the store
            (default: the Prefect Variable ferry-store, else FERRY_STORE on the worker).
        name: New container name (default: the original name).
        latest: Restore the newest complete snapshot of this container from the store at `archive`.
        allow_unverified: Accept an archive without a ferry manifest (a Podman export); its paths are still checked.
        allow_unsigned: Accept an archive that is unsigned or signed by a key not in this host's keyring
            (FERRY_TRUSTED_KEYS). Anyone with write access to the store can write such an archive. Every
            other check still applies.
        storage_options: fsspec options for the store, e.g. an endpoint. No secrets: parameters are shown in the UI.
        storage_secret: A Prefect block with the store's credentials: a Secret block (NAME, a JSON object of
            fsspec options), aws-credentials/NAME (AwsCredentials) or gcp-credentials/NAME (GcpCredentials).
        tcp_established: Restore established TCP connections as they were (default: off; a migration turns it on).
        tcp_close: Restore established TCP connections closed (default: on, unless tcp_established is asked for).
        file_locks: Restore file locks.
        ignore_static_ip: Let the network assign a fresh IP instead of the archived one (default: on).
        ignore_static_mac: Let the network assign a fresh MAC address instead of the archived one (default: on).
        publish: Publish these ports instead of the archived ones ([[ip:][hostPort]:]containerPort[/protocol]).
        timeout_seconds: Give up on the CRIU restore after this long; what it left is removed.
        handoff: Set by ferry-migrate, not by hand: get ready, then wait for the archive's URL from the source.
    """
    options = restore_options(
        "restore",
        tcp_established=tcp_established,
        tcp_close=tcp_close,
        file_locks=file_locks,
        ignore_static_ip=ignore_static_ip,
        ignore_static_mac=ignore_static_mac,
        publish=publish,
    )
    check_rename(options, name)
    if handoff:
        staging = new_run_dir("restore", name or "handoff")
        get_ready_task(handoff, name, staging)
        archive = await_archive_task(handoff, StoreRef("", storage_options, storage_secret))
    else:
        if latest:
            archive = locate_task(StoreRef(store_url(archive), storage_options, storage_secret), latest)
        elif not archive.strip():
            raise UsageError("Name the archive to restore (its URL), or a container with `latest`.")
        staging = new_run_dir("restore", archive.rstrip("/").rsplit("/", 1)[-1])
    ref = StoreRef(store_of(archive), storage_options, storage_secret)
    announced = sidecar_task(archive, ref, allow_unsigned)
    if announced.claims is not None:
        load_image_task(announced.claims.image_id, announced.claims.image_name, staging, ref)
        prepared = receive_task(announced, staging, ref, name, options, allow_unsigned)
    else:
        fetched = download_task(archive, staging, ref)
        verified = verify_task(fetched, allow_unverified, allow_unsigned)
        load_image_task(verified.report.image_id, verified.report.image_name, staging, ref)
        prepared = prepare_import_task(verified, name, options)
    restored = restore_task(prepared, timeout_seconds)
    remove_run_dir(staging)
    return restored

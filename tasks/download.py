"""Download: the archive from the store into this host's staging directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task

from ferry import progress
from ferry.archive.manifest import Sidecar
from ferry.faults import maybe_fail
from storage.reading import download as fetch
from storage.reading import read_sidecar
from storage.ref import StoreRef
from tasks.retry import transient


@dataclass(frozen=True)
class Fetched:
    url: str
    path: Path
    size: int
    sidecar: Sidecar | None  # None: no ferry sidecar (e.g. a Podman export)


def download(url: str, staging: Path, ref: StoreRef) -> Fetched:
    """Fetch the archive at ``url`` (in the store ``ref``, whose options and credentials are used)."""
    maybe_fail("download")
    options = ref.options()
    sidecar = read_sidecar(url, options)
    dest = staging / "download.archive"
    name = url.rstrip("/").rsplit("/", 1)[-1]
    total = sidecar.size if sidecar else None
    with progress.stage("download", name, total=total, streams=True, artifact=f"download of {url}") as stage:
        size = fetch(url, dest, options, on_bytes=stage.advance)
    return Fetched(url, dest, size, sidecar)


@task(name="download", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient, persist_result=True)
def download_task(url: str, staging: Path, ref: StoreRef) -> Fetched:
    return download(url, staging, ref)

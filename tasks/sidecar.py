"""Sidecar: the archive's record in the store, read and its signature checked before anything else.

With a sidecar whose manifest names the container's image, the restore takes the one-pass path
(:mod:`tasks.receive`): what the manifest claims (name, image, named volumes) is used to prepare
the host, and is checked against the archive's own ``config.dump`` once the archive has been
read. Without one (a Podman export, an archive written before manifests named the image), the
restore downloads, verifies and then rewrites (:mod:`tasks.download`, :mod:`tasks.verify`,
:mod:`tasks.prepare_import`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from ferry import keys
from ferry.archive.claims import Claims
from ferry.archive.manifest import Sidecar
from ferry.archive.signing import check as check_signature
from storage.reading import read_sidecar
from storage.ref import StoreRef
from tasks.retry import transient


@dataclass(frozen=True)
class Announced:
    url: str
    sidecar: Sidecar | None  # None: no ferry sidecar (e.g. a Podman export)
    #: What the manifest says; None when the restore cannot go in one pass (no sidecar, no image id).
    claims: Claims | None
    signature: str = ""  # who signed it, or that it was let through unsigned


def read_announced(url: str, ref: StoreRef, allow_unsigned: bool = False) -> Announced:
    sidecar = read_sidecar(url, ref.options())
    if sidecar is None:
        return Announced(url, None, None)  # the verify stage checks (and refuses) what is unsigned
    verdict = check_signature(sidecar, keys.trusted_keys(), allow_unsigned)
    return Announced(url, sidecar, Claims.of(sidecar.manifest), verdict.detail)


@task(name="sidecar", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient, persist_result=True)
def sidecar_task(url: str, ref: StoreRef, allow_unsigned: bool = False) -> Announced:
    return read_announced(url, ref, allow_unsigned)

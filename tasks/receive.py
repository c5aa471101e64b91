"""Receive: the archive from the store to the tar Podman imports, in one pass.

Download, decryption, decompression, every check of the verify stage and everything the
prepare-import stage does, at once, streaming from the store with no local copy of the archive:
the signature first, then each member hashed and checked while the rewrite for this host is
written to a ``.partial`` file in staging. Only after the last check passed (the manifest and
the sidecar's hashes at the end, the CRIU images' credentials, ``config.dump`` against what the
sidecar's manifest claimed up front) is it renamed to the name the restore stage hands Podman;
on any failure it is removed. A store failure mid-stream is retried from the start.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from ferry import progress
from ferry.errors import UsageError
from ferry.faults import maybe_fail
from ferry.options import RestoreOptions
from ferry.runtime import Runtime, current
from ferry.verification import receive_source
from storage.fsio import PARTIAL_SUFFIX
from storage.reading import stream_archive
from storage.ref import StoreRef
from tasks.prepare_import import IMPORT_TAR, ImageLinkCheck, Prepared, check_free, host_context, require_image
from tasks.retry import transient
from tasks.sidecar import Announced


def receive(
    announced: Announced,
    staging: Path,
    ref: StoreRef,
    name: str | None = None,
    runtime: Runtime | None = None,
    options: RestoreOptions | None = None,
    allow_unsigned: bool = False,
) -> Prepared:
    maybe_fail("download")
    runtime = runtime or current()
    options = options or RestoreOptions()
    sidecar, claims = announced.sidecar, announced.claims
    if sidecar is None or claims is None:
        raise UsageError(f"{announced.url} has no sidecar naming its image: it is restored in two passes.")
    check_free(runtime, name or claims.name, claims.volumes)
    require_image(runtime, claims.image_id, claims.image_name)
    out = staging / IMPORT_TAR
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    ctx, criu_config = host_context(runtime, staging, options)
    label = announced.url.rstrip("/").rsplit("/", 1)[-1]
    try:
        with (
            progress.stage(
                "receive", label, total=sidecar.size, streams=True, artifact=f"receive of {announced.url}"
            ) as stage,
            runtime.image_mounted(claims.image_id) as image_root,
            stream_archive(announced.url, ref.options()) as src,
            partial.open("wb") as sink,
        ):
            report, _ = receive_source(
                stage.reader(src),
                sidecar,
                sink,
                claims=claims,
                ctx=ctx,
                allow_unsigned=allow_unsigned,
                check_diff_path=ImageLinkCheck(image_root),
            )
        maybe_fail("verify")  # where the last check stood: a failure here must leave Podman nothing
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Prepared(out, name, report, options, criu_config)


@task(name="receive", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient, persist_result=True)
def receive_task(
    announced: Announced,
    staging: Path,
    ref: StoreRef,
    name: str | None = None,
    options: RestoreOptions | None = None,
    allow_unsigned: bool = False,
) -> Prepared:
    return receive(announced, staging, ref, name, options=options, allow_unsigned=allow_unsigned)

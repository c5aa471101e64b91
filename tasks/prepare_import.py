"""Prepare import: rewrite the verified archive into the tar ``podman container restore --import`` reads.

This is the second pass of a restore of an archive without a sidecar (downloaded, then
verified); archives with one are verified and rewritten in one pass by :mod:`tasks.receive`,
with the checks defined here (name and volumes free, image present, the image's symlinks).

Podman applies ``rootfs-diff.tar`` and ``deleted.files`` itself, in the same step as the CRIU
restore, so ferry cannot run between the two. What ferry controls is what Podman gets, written
by ferry itself (:func:`ferry.archive.reader.rewrite`): ``config.dump`` and ``spec.dump`` rebuilt
for this host (:mod:`ferry.archive.rebuild`), nested tars and the rootfs diff rebuilt from entries
that passed the checks, the diff checked once more against the image's own symlinks (a diff
entry below an image symlink would be written wherever that link points), and CRIU images passed
on only after their credentials were checked against the rebuilt spec.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from prefect import task

from ferry import keys, progress, restore_policy
from ferry.archive.envelope import open_plain
from ferry.archive.reader import Report, rewrite
from ferry.archive.rebuild_context import HostFacts, RebuildContext
from ferry.errors import ContainerStateError, RestoreError, UnsafeArchiveError
from ferry.options import RestoreOptions
from ferry.runtime import Runtime, current
from tasks.verify import Verified


@dataclass(frozen=True)
class Prepared:
    path: Path
    name: str | None  # the new name asked for, or None to keep the archive's
    report: Report
    options: RestoreOptions = field(default_factory=RestoreOptions)
    criu_config: Path | None = None  # the CRIU config file the spec names (written by the restore stage)


#: The tar Podman imports, in the run's staging directory.
IMPORT_TAR = "podman-import.tar"


class ImageLinkCheck:
    """Refuses diff paths whose parent directories are symlinks in the image."""

    def __init__(self, image_root: Path) -> None:
        self._root = image_root
        self._safe: set[str] = set()

    def __call__(self, rel: str) -> None:
        parts = rel.split("/")[:-1]
        prefix = ""
        for part in parts:
            prefix = f"{prefix}/{part}" if prefix else part
            if prefix in self._safe:
                continue
            try:
                mode = (self._root / prefix).lstat().st_mode
            except FileNotFoundError:
                return  # does not exist in the image: Podman creates a plain directory
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(
                    f"rootfs-diff: {rel!r} lies below {prefix!r}, a symlink in the container's "
                    "image; writing it would follow the link. Refusing the archive."
                )
            self._safe.add(prefix)


def host_facts(runtime: Runtime, staging: Path) -> HostFacts:
    """What this host's Podman would configure itself: the yardstick for the archive's config."""
    volume_path, cgroup_manager, oci_runtime = runtime.store_info()
    return HostFacts(volume_path, cgroup_manager, oci_runtime, runtime.reference_spec(staging))


def check_free(runtime: Runtime, target: str, volumes: frozenset[str]) -> None:
    """The container's name and its named volumes must not exist on this host: ferry overwrites nothing."""
    if target and runtime.exists(target):
        raise ContainerStateError(
            f"A container named {target!r} already exists on this host; ferry leaves it alone. "
            "Restore under another name with --name, or remove the existing one first."
        )
    taken = [v for v in sorted(volumes) if runtime.volume_exists(v)]
    if taken:
        raise ContainerStateError(
            f"The archive carries the named volume(s) {', '.join(taken)}, and a volume of that name already "
            "exists on this host. Podman restores a volume's content only into a new volume, and ferry never "
            "overwrites an existing one: remove it (`podman volume rm NAME`, after saving what it holds) or "
            "restore on another host."
        )


def require_image(runtime: Runtime, image_id: str, image_name: str) -> None:
    if not image_id or not runtime.image_exists(image_id):
        raise RestoreError(
            f"The container's image {image_name or '?'} (id {image_id[:12] or '?'}) "
            "is not on this host, and Podman needs the very same image id to restore. Copy it "
            "from the source host (`podman save IMAGE | podman load`) and run the restore again."
        )


def host_context(runtime: Runtime, staging: Path, options: RestoreOptions) -> tuple[RebuildContext, Path | None]:
    """What the rewrite measures the archive against on this host, and the CRIU config file the
    rebuilt spec names (None: none)."""
    criu_config = staging / "criu-restore.conf" if options.tcp_close else None
    ctx = RebuildContext(
        policy=restore_policy.load(),
        host=host_facts(runtime, staging),
        criu_config=str(criu_config) if criu_config else None,
    )
    return ctx, criu_config


def prepare_import(
    verified: Verified,
    name: str | None = None,
    runtime: Runtime | None = None,
    options: RestoreOptions | None = None,
) -> Prepared:
    """The second pass of a restore without a sidecar: rewrite the verified local copy."""
    runtime = runtime or current()
    options = options or RestoreOptions()
    report = verified.report
    check_free(runtime, name or report.name, report.volumes)
    require_image(runtime, report.image_id, report.image_name)
    staging = verified.fetched.path.parent
    out = staging / IMPORT_TAR
    ctx, criu_config = host_context(runtime, staging, options)
    with (
        progress.stage("prepare-import", total=verified.fetched.size) as stage,
        runtime.image_mounted(report.image_id) as image_root,
    ):
        check = ImageLinkCheck(image_root)
        try:
            with verified.fetched.path.open("rb") as src, out.open("wb") as sink:
                opened = open_plain(stage.reader(src), verified.fetched.sidecar, keys.encryption_key())
                rewrite(opened.plain, sink, expected=report, check_diff_path=check, ctx=ctx)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return Prepared(out, name, report, options, criu_config)


@task(name="prepare-import", retries=0, persist_result=True)
def prepare_import_task(verified: Verified, name: str | None = None, options: RestoreOptions | None = None) -> Prepared:
    return prepare_import(verified, name, options=options)

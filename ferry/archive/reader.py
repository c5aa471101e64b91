"""Read an untrusted checkpoint archive as a stream: verify it, rewrite it for Podman, or both at once.

Each walks the archive once, in order, without extracting anything: each member is hashed
while it streams past, the rootfs diff's own entries are checked one by one, and the manifest at
the end is compared with what was actually seen. Any surprise raises an :class:`ArchiveError`.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import zstandard

from ferry.archive import criu_images, nested, seccomp_bpf
from ferry.archive import members as m
from ferry.archive.completeness import check_complete
from ferry.archive.compression import Compression, decompressing
from ferry.archive.criu_grants import Grants
from ferry.archive.manifest import Manifest, MemberDigest, Sidecar
from ferry.archive.policy import (
    check_deleted_below_links,
    check_outer_member,
    parse_deleted_files,
)
from ferry.archive.rebuild import MAX_JSON_BYTES, rebuild
from ferry.archive.rebuild_context import RebuildContext
from ferry.archive.streams import FullReads, HashingReader, Readable, drain, tar_stream
from ferry.errors import (
    ArchiveError,
    IntegrityError,
    UnsafeArchiveError,
)

DEFAULT_MAX_EXPANDED = 64 << 30
SMALL_MEMBER_LIMIT = 64 << 20  # manifest, deleted.files: read into memory, so bounded
TAR_OVERHEAD_PER_MEMBER = 3 * 512 + 511  # PAX header, header, padding


@dataclass
class Report:
    """What a verified archive holds."""

    compression: Compression
    archive_size: int = 0
    archive_sha256: str = ""
    members: dict[str, MemberDigest] = field(default_factory=dict)
    manifest: Manifest | None = None
    diff_files: int = 0
    diff_bytes: int = 0
    deleted: list[str] = field(default_factory=list)
    diff_entries: list[str] = field(default_factory=list)
    diff_symlinks: frozenset[str] = frozenset()
    #: From config.dump: the container's name and image as Podman will restore them.
    name: str = ""
    image_id: str = ""
    image_name: str = ""
    #: Named volumes the archive carries, checked against config.dump.
    volumes: frozenset[str] = frozenset()


#: Members the rewrite hands to Podman as they are (after their own checks); anything else an
#: archive holds (stats-dump, artifacts/, unknown names) is left out: Podman does not need it.
_PASSED = frozenset({m.ROOTFS_DIFF, m.DELETED_FILES, m.DEVSHM, m.CTR_LOG})


def _passed_to_podman(name: str) -> bool:
    if name in _PASSED:
        return True
    if name.startswith(m.CHECKPOINT_DIR + "/"):
        return True
    return name.startswith(m.VOLUMES_DIR + "/") and name.endswith(".tar")


@dataclass
class _Pending:
    """What the walk holds back until the end: the JSON members to rebuild, the manifest."""

    json: dict[str, bytes] = field(default_factory=dict)
    manifest: bytes | None = None
    volume_tars: set[str] = field(default_factory=set)
    #: checkpoint/core-*.img and seccomp.img, for the credential check at the end
    criu_images: dict[str, bytes] = field(default_factory=dict)
    #: the spec Podman gets (rebuilt): what the CRIU images may not exceed
    spec: dict[str, Any] | None = None
    #: specs rebuilt for other contexts too (a one-pass restore: verify's host-independent one)
    also_specs: list[dict[str, Any]] = field(default_factory=list)


def expansion_limit(sidecar: Sidecar | None) -> int:
    env = os.environ.get("FERRY_MAX_EXPANDED_BYTES")
    if env:
        return int(env)
    if sidecar is None:
        return DEFAULT_MAX_EXPANDED
    members = sidecar.manifest.members
    return sum(d.size + TAR_OVERHEAD_PER_MEMBER for d in members) + (1 << 20) * (len(members) + 4)


def verify(
    source: Readable,
    *,
    sidecar: Sidecar | None = None,
    require_manifest: bool = True,
    ctx: RebuildContext | None = None,
) -> Report:
    """Check every member of the archive in ``source``; nothing is written anywhere."""
    return _walk(source, sidecar=sidecar, require_manifest=require_manifest, sink=None, ctx=ctx or RebuildContext())


def rewrite(
    source: Readable,
    sink: BinaryIO,
    *,
    expected: Report,
    check_diff_path: Callable[[str], None] | None = None,
    ctx: RebuildContext | None = None,
) -> Report:
    """Write a canonical, uncompressed copy of a verified archive for Podman to import.

    The rootfs diff, deleted.files, config.dump, spec.dump, network.status and descriptors are
    rebuilt from checked entries and fields (for the host described by ``ctx``); members Podman
    does not need are left out. Hashes are checked again on the way: the staged file cannot
    change between verify and rewrite unnoticed.
    """
    report = _walk(
        source,
        sidecar=None,
        require_manifest=expected.manifest is not None,
        sink=sink,
        check_diff_path=check_diff_path,
        ctx=ctx or RebuildContext(),
    )
    if report.members != expected.members:
        raise IntegrityError("The archive changed between verification and restore; refusing it.")
    return report


def receive(
    source: Readable,
    sink: BinaryIO,
    *,
    sidecar: Sidecar,
    ctx: RebuildContext,
    verify_ctx: RebuildContext,
    check_diff_path: Callable[[str], None] | None = None,
) -> Report:
    """Verify and rewrite in one pass: every check :func:`verify` runs (against the sidecar,
    with ``verify_ctx``, as ``ferry verify`` would) and every check :func:`rewrite` runs (with
    this host's ``ctx``), while the rewrite streams into ``sink``.

    What was written is usable only when this returns: the manifest, the sidecar's hashes and
    the CRIU images' credentials are checked at the end. The caller checks what it assumed
    before the walk (:class:`ferry.archive.claims.Claims`) against the returned report."""
    return _walk(
        source,
        sidecar=sidecar,
        require_manifest=True,
        sink=sink,
        check_diff_path=check_diff_path,
        ctx=ctx,
        verify_ctx=verify_ctx,
    )


def _walk(
    source: Readable,
    *,
    sidecar: Sidecar | None,
    require_manifest: bool,
    sink: BinaryIO | None,
    ctx: RebuildContext,
    check_diff_path: Callable[[str], None] | None = None,
    verify_ctx: RebuildContext | None = None,
) -> Report:
    outer = HashingReader(FullReads(source))
    try:
        with decompressing(outer) as (compression, plain):
            report = Report(compression)
            bounded = HashingReader(plain, limit=expansion_limit(sidecar), what="archive", digest=False)
            out = tar_stream(sink, "w|") if sink else None
            try:
                pending = _members(bounded, report, out, check_diff_path, ctx, verify_ctx)
            finally:
                if out is not None:
                    out.close()
            drain(outer)  # trailing bytes count towards the archive hash too
    except ArchiveError as exc:
        _blame_corruption(outer, sidecar, exc)
        raise
    except (tarfile.TarError, EOFError, zstandard.ZstdError, gzip.BadGzipFile, zlib.error) as exc:
        _blame_corruption(outer, sidecar, exc)
        raise IntegrityError(
            f"The archive is truncated or corrupt ({type(exc).__name__}: {exc}). Download it "
            "again; if it stays broken, restore an older snapshot."
        ) from exc
    report.archive_size = outer.size
    report.archive_sha256 = outer.hexdigest()
    check_complete(
        report.members, report.manifest, report.archive_size, report.archive_sha256, sidecar, require_manifest
    )
    _check_credentials(pending)  # after integrity: a damaged archive is reported as damaged
    return report


def _check_credentials(pending: _Pending) -> None:
    """CRIU's images may not grant the restored processes more than the (rebuilt) spec does."""
    for spec in [*pending.also_specs, pending.spec or {}]:
        grants = Grants.from_spec(spec, must_deny=seccomp_bpf.host_default_denials())
        criu_images.check_core_images(pending.criu_images, grants)


def _blame_corruption(outer: HashingReader, sidecar: Sidecar | None, exc: Exception) -> None:
    """A member that fails to parse in an archive whose bytes differ from the store's record
    is corruption, not a format problem: say so, since that is what the operator must fix."""
    if sidecar is None:
        return
    try:
        drain(outer)
    except Exception:
        return
    if (outer.size, outer.hexdigest()) != (sidecar.size, sidecar.sha256):
        raise IntegrityError(
            f"The archive's sha256 does not match the store's record ({outer.size} bytes read, "
            f"{sidecar.size} recorded): it was corrupted or replaced. First problem seen: {exc}"
        ) from exc


def _members(
    stream: Readable,
    report: Report,
    out: tarfile.TarFile | None,
    check_diff_path: Callable[[str], None] | None,
    ctx: RebuildContext,
    verify_ctx: RebuildContext | None = None,
) -> _Pending:
    tar = tar_stream(stream, "r|")
    seen: set[str] = set()
    pending = _Pending()
    for info in tar:
        name = check_outer_member(info)
        if name in seen:
            raise UnsafeArchiveError(f"The archive holds {name!r} twice; refusing it.")
        seen.add(name)
        if report.manifest is not None:
            raise UnsafeArchiveError(f"Member {name!r} comes after the manifest; refusing it.")
        if info.isdir():
            if out is not None and name in (m.CHECKPOINT_DIR, m.VOLUMES_DIR):
                out.addfile(_clean_info(info, name))
            continue
        data = tar.extractfile(info)
        if data is None:  # a regular file always has data; anything else was refused above
            raise UnsafeArchiveError(f"Member {name!r} has no data.")
        reader = HashingReader(data, what=f"member {name}")
        payload = _member_payload(info, name, reader, report, out, check_diff_path, pending)
        with contextlib.ExitStack() as closing:  # a rebuilt payload is a temporary file: closed, even on a refusal
            if payload is not None:
                closing.callback(payload.close)
            drain(reader)
            if reader.size != info.size:
                raise IntegrityError(f"Member {name!r} is shorter than its tar header says.")
            if name != m.MANIFEST:
                report.members[name] = MemberDigest(name, reader.size, reader.hexdigest())
            if out is not None and payload is not None:
                _copy_member(out, info, name, payload)
    for path in report.deleted:  # after the loop: deleted.files may come before the diff
        check_deleted_below_links(path, report.diff_symlinks)
    if m.CONFIG_DUMP not in pending.json or m.SPEC_DUMP not in pending.json:
        return pending  # check_complete names what is missing
    if verify_ctx is not None:  # first, as a separate verify would have refused first
        pending.also_specs.append(rebuild(pending.json, verify_ctx, frozenset(pending.volume_tars)).spec)
    rebuilt = rebuild(pending.json, ctx, frozenset(pending.volume_tars))
    report.name, report.image_id, report.image_name = rebuilt.name, rebuilt.image_id, rebuilt.image_name
    report.volumes = rebuilt.volumes
    pending.spec = rebuilt.spec
    if out is not None:
        for member, body in [*rebuilt.members.items(), *([(m.MANIFEST, pending.manifest)] if pending.manifest else [])]:
            clean = tarfile.TarInfo(member)
            clean.size, clean.mode = len(body), 0o600
            out.addfile(clean, io.BytesIO(body))
    return pending


def _member_payload(
    info: tarfile.TarInfo,
    name: str,
    reader: HashingReader,
    report: Report,
    out: tarfile.TarFile | None,
    check_diff_path: Callable[[str], None] | None,
    pending: _Pending,
) -> BinaryIO | None:
    """Inspect one member; return what the rewrite should write for it (None: skip)."""
    if name == m.MANIFEST:
        report.manifest = Manifest.from_json(_read_small(reader, name))
        pending.manifest = report.manifest.to_json()
        return None
    if name in m.REBUILT_JSON:
        pending.json[name] = _read_small(reader, name, limit=MAX_JSON_BYTES)
        return None
    if name == m.DELETED_FILES:
        report.deleted = parse_deleted_files(_read_small(reader, name))
        for path in report.deleted:
            if check_diff_path:
                check_diff_path(path)
        canonical = json.dumps(["/" + p for p in report.deleted]).encode()
        return io.BytesIO(canonical) if out is not None else None
    if name == m.ROOTFS_DIFF:
        return _scan_diff(reader, report, rebuild=out is not None, check_diff_path=check_diff_path)
    if criu_images.is_collected(name):
        return _collect_image(reader, name, pending, out is not None)
    kind = nested.kind_of(name)
    if kind is not None:
        volume = nested.volume_name(name)
        if volume is not None:
            pending.volume_tars.add(volume)
        rebuilt = tempfile.TemporaryFile() if out is not None else None
        with _closed_on_error(rebuilt):
            nested.rebuild(reader, kind, rebuilt, compressed_size=info.size)
        return rebuilt
    if out is not None and _passed_to_podman(name):
        # Straight across: the output is only used once the whole archive has passed, and a
        # short member makes addfile fail.
        clean = _clean_info(info, name)
        clean.size = info.size
        out.addfile(clean, reader)
    return None


def _scan_diff(
    reader: HashingReader, report: Report, *, rebuild: bool, check_diff_path: Callable[[str], None] | None
) -> BinaryIO | None:
    def seen(name: str) -> None:
        report.diff_entries.append(name)
        if check_diff_path:
            check_diff_path(name)

    rebuilt = tempfile.TemporaryFile() if rebuild else None
    with _closed_on_error(rebuilt):
        checker = nested.rebuild(
            reader, nested.kind_of(m.ROOTFS_DIFF) or nested.Kind(m.ROOTFS_DIFF), rebuilt, on_entry=seen
        )
    report.diff_files, report.diff_bytes = checker.files, checker.bytes
    report.diff_symlinks = checker.symlinks
    return rebuilt


@contextlib.contextmanager
def _closed_on_error(temporary: BinaryIO | None) -> Iterator[None]:
    """A temporary file being filled is closed (and so removed) when the filling is refused."""
    try:
        yield
    except BaseException:
        if temporary is not None:
            temporary.close()
        raise


def _collect_image(reader: HashingReader, name: str, pending: _Pending, rewrite: bool) -> BinaryIO | None:
    limit = criu_images.image_limit(name)
    data = reader.read(limit + 1)
    if len(data) > limit:
        raise UnsafeArchiveError(f"CRIU image {name!r} is larger than {limit} bytes; refusing it.")
    if len(pending.criu_images) >= criu_images.MAX_IMAGES:
        raise UnsafeArchiveError(f"The archive holds more than {criu_images.MAX_IMAGES} CRIU core images.")
    pending.criu_images[name] = data
    return io.BytesIO(data) if rewrite else None


def _read_small(reader: HashingReader, name: str, limit: int = SMALL_MEMBER_LIMIT) -> bytes:
    data = reader.read(limit + 1)
    if len(data) > limit:
        raise UnsafeArchiveError(f"Member {name!r} is larger than {limit} bytes; refusing the archive.")
    return data


def _clean_info(info: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    clean = tarfile.TarInfo(name)
    clean.type = info.type
    clean.mode = info.mode & 0o1777  # never setuid/setgid
    clean.uid, clean.gid = info.uid, info.gid
    clean.uname, clean.gname = info.uname, info.gname
    clean.mtime = info.mtime
    clean.size = info.size if info.isreg() else 0
    clean.linkname = info.linkname
    return clean


def _copy_member(out: tarfile.TarFile, info: tarfile.TarInfo, name: str, payload: BinaryIO) -> None:
    payload.seek(0, io.SEEK_END)
    size = payload.tell()
    payload.seek(0)
    clean = _clean_info(info, name)
    clean.size = size
    out.addfile(clean, payload)
    payload.close()

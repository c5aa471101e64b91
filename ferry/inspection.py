"""``ferry inspect``: what a checkpoint archive holds, and whether this host could restore it.

A checkpointctl-style view. The archive is untrusted and may be large and remote, so it is read
exactly once, as a stream: the bytes pass through :func:`ferry.archive.reader.verify` (the same
check a restore makes) and are copied, chunk by chunk, to a scanner thread that decompresses them
again and keeps only what it shows: small JSON members, member sizes, the rootfs diff's entry
count, and the few CRIU images it decodes (``pstree.img``, ``core-<pid>.img``, ``cpuinfo.img``,
``stats-dump``). Those images go into a private temporary directory under names ferry makes up;
nothing else is ever written.

CRIU images are decoded by Debian's ``crit`` (``crit decode -i FILE``), run as a subprocess by
:mod:`ferry.runtime`: its ``pycriu`` lives in the system Python, not in ferry's venv.

A verification failure does not stop the inspection: the point of inspecting a suspicious
archive is to see what it is. Whatever could not be read is listed under ``notes``.
"""

from __future__ import annotations

import queue
import re
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ferry.archive import members as m
from ferry.archive import safejson
from ferry.archive.compression import decompressing
from ferry.archive.manifest import Manifest, Sidecar
from ferry.archive.policy import confined, parse_deleted_files
from ferry.archive.reader import SMALL_MEMBER_LIMIT, expansion_limit, verify
from ferry.archive.streams import HashingReader, Readable, drain
from ferry.errors import ArchiveError, FerryError, IntegrityError, UnsupportedArchiveError
from ferry.runtime import Podman, cpuinfo_check, crit_decode, criu_check, criu_version
from storage.store import open_archive, read_sidecar

#: CRIU images ferry copies out to decode; real ones are a few KiB.
IMAGE_LIMIT = 16 << 20
#: Each decoded process costs one crit run (~0.1 s); a tree larger than this is listed without names.
MAX_DECODED_PROCESSES = 128
#: Chunks in flight between the verifier and the scanner (each up to 1 MiB).
QUEUE_DEPTH = 16

PSTREE = "checkpoint/pstree.img"
CPUINFO = "checkpoint/cpuinfo.img"
_CORE_RE = re.compile(r"checkpoint/core-(\d{1,10})\.img")
_PAGES_RE = re.compile(r"checkpoint/pages-\d+\.img")
_NO_CPUINFO = "no cpuinfo image in the archive; not checked"


# -- public API ---------------------------------------------------------------------------------


def inspect_archive(
    url: str, storage_options: dict[str, Any] | None = None, runtime: Podman | None = None
) -> dict[str, Any]:
    """Describe the archive at ``url`` and check it against this host; JSON-serialisable."""
    runtime = runtime if runtime is not None else Podman()
    sidecar, sidecar_problem = _sidecar(url, storage_options)
    with tempfile.TemporaryDirectory(prefix="ferry-inspect-") as tmp:
        work = Path(tmp)
        with open_archive(url, storage_options) as source:
            scan, verification = _scan_and_verify(source, sidecar, work)
        if sidecar_problem:
            verification = (False, sidecar_problem)
        processes = _processes(scan)
        stats = _dump_stats(scan)
        cpu = _cpu_compat(scan)
    data = _describe(url, scan, verification, processes, stats)
    data["compatibility"] = _compatibility(data, cpu, runtime)
    data["notes"] = scan.notes
    return data


# -- one pass: verify and scan the same bytes ---------------------------------------------------


def _sidecar(url: str, storage_options: dict[str, Any] | None) -> tuple[Sidecar | None, str]:
    """The store's record of the archive; a malformed one is a verification failure to show,
    not a reason to refuse the inspection."""
    try:
        return read_sidecar(url, storage_options), ""
    except UnsupportedArchiveError as exc:
        return None, str(exc)


def _scan_and_verify(source: Readable, sidecar: Sidecar | None, work: Path) -> tuple[_Scan, tuple[bool, str]]:
    """Run verify over ``source`` in this thread while a scanner thread reads a copy of the
    same bytes: the archive is fetched once, however large or remote it is."""
    chunks: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_DEPTH)
    scan = _Scan(work, expansion_limit(sidecar))
    worker = threading.Thread(target=scan.run, args=(_QueueReader(chunks),), name="ferry-inspect", daemon=True)
    tee = _Tee(source, chunks)
    worker.start()
    try:
        verification = _verify(tee, sidecar)
        drain(tee)  # verify stops at the first problem; the scanner goes on to the end
    finally:
        chunks.put(b"")  # end of stream, exactly once: the scanner consumes until it sees it
        worker.join()
    scan.archive_bytes = tee.size
    if scan.error is not None:
        _scan_failed(scan)
    return scan, verification


def _verify(tee: _Tee, sidecar: Sidecar | None) -> tuple[bool, str]:
    try:
        verify(tee, sidecar=sidecar)
    except ArchiveError as exc:
        return False, str(exc)
    if sidecar is None:
        return False, (
            "there is no sidecar next to the archive, so the archive as a whole is not checked "
            "against a store record; its members do match its internal manifest"
        )
    return True, "the archive matches the store's sidecar and every member matches the manifest"


def _scan_failed(scan: _Scan) -> None:
    """A stream the scanner could not read at all is not an archive to show; one that broke
    halfway still shows what came before the break."""
    error = scan.error
    if scan.members == 0:
        if isinstance(error, ArchiveError):
            raise error
        raise IntegrityError(f"The archive cannot be read ({type(error).__name__}: {error}).") from error
    scan.notes.append(f"Reading stopped after {scan.members} members: {type(error).__name__}: {error}")


class _Tee:
    """The verifier's source: passes each chunk on and hands a copy to the scanner."""

    def __init__(self, source: Readable, chunks: queue.Queue[bytes]) -> None:
        self._source = source
        self._chunks = chunks
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._source.read(size)
        if data:  # b"" is reserved for the end of the stream
            self.size += len(data)
            self._chunks.put(data)  # blocks while the scanner is behind: memory stays bounded
        return data


class _QueueReader:
    """The scanner's source: the chunks the verifier read, in order."""

    def __init__(self, chunks: queue.Queue[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._eof = False

    def read(self, size: int = -1, /) -> bytes:
        if not self._buffer and not self._eof:
            self._buffer = self._chunks.get()
            self._eof = not self._buffer
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


@dataclass
class _Scan:
    """What the scanner thread saw. Only this thread writes it until it is joined."""

    work: Path
    limit: int
    compression: str = ""
    members: int = 0
    archive_bytes: int = 0
    total_bytes: int = 0
    memory_pages: int = 0
    rootfs_diff: int = 0
    changed_files: int = 0
    deleted_files: int = 0
    created_fallback: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    manifest: Manifest | None = None
    images: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: BaseException | None = None
    _seen: set[str] = field(default_factory=set)

    def run(self, reader: _QueueReader) -> None:
        try:
            self._walk(reader)
        except Exception as exc:  # reported by the main thread once joined
            self.error = exc
        finally:
            drain(reader)  # never leave the verifier blocked on a full queue

    def _walk(self, reader: _QueueReader) -> None:
        with decompressing(reader) as (compression, plain):
            self.compression = compression
            bounded = HashingReader(plain, limit=self.limit, what="archive")
            tar = tarfile.open(fileobj=bounded, mode="r|")  # type: ignore[call-overload]
            for info in tar:
                self.members += 1
                self._member(tar, info)

    def _member(self, tar: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        try:
            name = confined(info.name, where="archive member")
        except ArchiveError as exc:
            self.notes.append(f"Skipped a member: {exc}")
            return
        if not info.isreg():
            return
        if name in self._seen:
            self.notes.append(f"Member {name!r} appears twice; only the first is shown.")
            return
        self._seen.add(name)
        self.total_bytes += info.size
        data = tar.extractfile(info)
        if data is None:
            return
        try:
            self._payload(name, info, data)
        except (ArchiveError, ValueError, OSError, tarfile.TarError) as exc:
            # One unreadable member (bad JSON, a hostile diff entry) hides only itself.
            self.notes.append(f"Cannot read {name}: {exc}")

    def _payload(self, name: str, info: tarfile.TarInfo, data: Readable) -> None:
        if _PAGES_RE.fullmatch(name):
            self.memory_pages += info.size
        elif name == m.INVENTORY:
            self.created_fallback = datetime.fromtimestamp(info.mtime, UTC).isoformat().replace("+00:00", "Z")
        elif name == m.ROOTFS_DIFF:
            self.rootfs_diff = info.size
            self.changed_files = _count_diff_entries(data)
        elif name == m.DELETED_FILES:
            self.deleted_files = len(parse_deleted_files(_small(data, name)))
        elif name == m.CONFIG_DUMP:
            self.config = _json_object(_small(data, name), name)
        elif name == m.SPEC_DUMP:
            self.spec = _json_object(_small(data, name), name)
        elif name == m.MANIFEST:
            self.manifest = Manifest.from_json(_small(data, name))
        else:
            self._keep_image(name, info, data)

    def _keep_image(self, name: str, info: tarfile.TarInfo, data: Readable) -> None:
        """Copy one of the CRIU images ferry decodes into the work directory, under a name
        ferry builds itself (never the archive's)."""
        core = _CORE_RE.fullmatch(name)
        if core:
            if sum(1 for k in self.images if k.startswith("core-")) >= MAX_DECODED_PROCESSES:
                return
            local = f"core-{int(core.group(1))}.img"
        elif name in (PSTREE, CPUINFO, m.STATS_DUMP):
            local = name.rsplit("/", 1)[-1]
        else:
            return
        if info.size > IMAGE_LIMIT:
            self.notes.append(f"{name} is {info.size} bytes, more than a CRIU image of its kind holds; not decoded.")
            return
        # cpuinfo.img gets a directory of its own: `criu cpuinfo check -D` reads that directory.
        folder = self.work / ("cpu" if name == CPUINFO else "images")
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / local
        with path.open("xb") as out:
            out.write(_small(data, name, IMAGE_LIMIT))
        self.images[local] = path


def _count_diff_entries(data: Readable) -> int:
    """Entries a restore would create: files, hardlinks, symlinks and directories."""
    count = 0
    inner = tarfile.open(fileobj=data, mode="r|")  # type: ignore[call-overload]
    try:
        for entry in inner:
            if entry.isreg() or entry.islnk() or entry.issym() or entry.isdir():
                count += 1 if confined(entry.name, where="rootfs-diff.tar") else 0
    except tarfile.ReadError as exc:
        if "empty file" not in str(exc):
            raise
    return count


def _small(data: Readable, name: str, limit: int = SMALL_MEMBER_LIMIT) -> bytes:
    raw = data.read(limit + 1)
    if len(raw) > limit:
        raise ArchiveError(f"member {name!r} is larger than {limit} bytes")
    return raw


def _json_object(raw: bytes, name: str) -> dict[str, Any]:
    value = safejson.loads(raw, what=name, max_bytes=4 << 20, max_depth=32)
    if not isinstance(value, dict):
        raise UnsupportedArchiveError(f"{name} is not a JSON object.")
    return value


# -- CRIU images --------------------------------------------------------------------------------


def _entries(path: Path) -> list[dict[str, Any]]:
    entries = crit_decode(path).get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UnsupportedArchiveError(f"{path.name} decodes to no list of entries.")
    return entries


def _processes(scan: _Scan) -> list[dict[str, Any]]:
    """The process tree from pstree.img, each process named by the comm in its core image."""
    pstree = scan.images.get("pstree.img")
    if pstree is None:
        scan.notes.append("The archive has no checkpoint/pstree.img; the process tree cannot be shown.")
        return []
    try:
        tree = [_process(entry) for entry in _entries(pstree)]
    except (FerryError, LookupError, ValueError, TypeError) as exc:
        scan.notes.append(f"The process tree cannot be shown: {exc}")
        return []
    for index, proc in enumerate(tree):
        if index >= MAX_DECODED_PROCESSES:
            scan.notes.append(f"Only the first {MAX_DECODED_PROCESSES} processes are named.")
            break
        proc["comm"] = _comm(scan, proc["pid"])
    return tree


def _process(entry: dict[str, Any]) -> dict[str, Any]:
    threads = entry.get("threads") or []
    return {
        "pid": _int(entry["pid"]),
        "ppid": _int(entry.get("ppid", 0)),
        "pgid": _int(entry.get("pgid", 0)),
        "sid": _int(entry.get("sid", 0)),
        "threads": len(threads) if isinstance(threads, list) else 0,
        "comm": "",
    }


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _comm(scan: _Scan, pid: int) -> str:
    core = scan.images.get(f"core-{pid}.img")
    if core is None:
        scan.notes.append(f"There is no core image for pid {pid}; its name is unknown.")
        return ""
    try:
        comm = _entries(core)[0]["tc"]["comm"]
    except (FerryError, LookupError, TypeError) as exc:
        scan.notes.append(f"Cannot read the name of pid {pid}: {exc}")
        return ""
    return str(comm)


def _dump_stats(scan: _Scan) -> dict[str, int]:
    """CRIU's own dump statistics (stats-dump): how long the processes were frozen, pages written."""
    path = scan.images.get(m.STATS_DUMP)
    if path is None:
        return {}
    try:
        dump = _entries(path)[0]["dump"]
        return {str(k): int(v) for k, v in dict(dump).items()}
    except (FerryError, LookupError, TypeError, ValueError) as exc:
        scan.notes.append(f"Cannot read CRIU's dump statistics: {exc}")
        return {}


# -- compatibility with this host ---------------------------------------------------------------


def _cpu_compat(scan: _Scan) -> dict[str, Any]:
    path = scan.images.get("cpuinfo.img")
    if path is None:
        return {"ok": None, "detail": _NO_CPUINFO}
    ok, detail = cpuinfo_check(path.parent)
    return {"ok": ok, "detail": detail}


def _compatibility(data: dict[str, Any], cpu: dict[str, Any], runtime: Podman) -> dict[str, dict[str, Any]]:
    return {
        "criu": _criu_compat(data["source"]["criu"]),
        "cpu": cpu,
        "image": _image_compat(data["image"], runtime),
        "name": _name_compat(data["container"]["name"], runtime),
    }


def _criu_compat(source_criu: str) -> dict[str, Any]:
    ok, out = criu_check()
    version = criu_version() or "?"
    dumped = f" (the archive was dumped by CRIU {source_criu})" if source_criu else ""
    if ok:
        return {"ok": True, "detail": f"criu {version} passes `criu check`{dumped}"}
    return {"ok": False, "detail": f"criu {version} fails `criu check`{dumped}: {out[-500:]}"}


def _image_compat(image: dict[str, str], runtime: Podman) -> dict[str, Any]:
    ref = image["id"] or image["name"]
    if not ref:
        return {"ok": None, "detail": "the archive names no image; not checked"}
    present = _ask(lambda: runtime.image_exists(ref))
    if present is None:
        return {"ok": None, "detail": f"cannot ask podman whether image {ref} is present"}
    if present:
        return {"ok": True, "detail": f"image {_short(ref)} is present"}
    return {
        "ok": False,
        "detail": f"image {_short(ref)} ({image['name'] or 'no name'}) is not on this host: pull or load it first",
    }


def _name_compat(name: str, runtime: Podman) -> dict[str, Any]:
    if not name:
        return {"ok": None, "detail": "the archive names no container; not checked"}
    taken = _ask(lambda: runtime.exists(name))
    if taken is None:
        return {"ok": None, "detail": f"cannot ask podman whether a container {name!r} exists"}
    if taken:
        return {"ok": False, "detail": f"a container named {name!r} exists here: restore with --name, or remove it"}
    return {"ok": True, "detail": f"no container named {name!r} here"}


def _ask(question: Callable[[], bool]) -> bool | None:
    """A podman yes/no question; None when podman cannot be run at all."""
    try:
        return question()
    except (OSError, subprocess.SubprocessError):
        return None


# -- the result ---------------------------------------------------------------------------------


def _describe(
    url: str,
    scan: _Scan,
    verification: tuple[bool, str],
    processes: list[dict[str, Any]],
    stats: dict[str, int],
) -> dict[str, Any]:
    manifest = scan.manifest
    config = scan.config
    source = manifest.source if manifest else None
    return {
        "url": url,
        "verified": verification[0],
        "verification": verification[1],
        "container": {
            "name": _first(config.get("name"), manifest and manifest.container.name),
            "id": _first(config.get("id"), manifest and manifest.container.id),
        },
        "image": {
            "name": _first(config.get("rootfsImageName"), manifest and manifest.container.image_name),
            "id": _first(config.get("rootfsImageID"), manifest and manifest.container.image_id),
        },
        "engine": "podman",
        "runtime": _first(source and source.runtime, config.get("runtime")),
        "source": {
            "host": source.host if source else "",
            "kernel": source.kernel if source else "",
            "criu": source.criu if source else "",
            "podman": source.podman if source else "",
        },
        "created": _first(manifest and manifest.created, scan.created_fallback),
        "mode": manifest.mode if manifest else None,
        "compression": scan.compression,
        "members": scan.members,
        "sizes": {
            "archive": scan.archive_bytes,
            "total": scan.total_bytes,
            "memory_pages": scan.memory_pages,
            "rootfs_diff": scan.rootfs_diff,
            "changed_files": scan.changed_files,
            "deleted_files": scan.deleted_files,
        },
        "command": _command(scan.spec),
        "processes": processes,
        "dump_stats": stats,
    }


def _first(*values: object) -> str:
    for value in values:
        if isinstance(value, str) and value:
            return value
    return ""


def _command(spec: dict[str, Any]) -> list[str]:
    process = spec.get("process")
    args = process.get("args") if isinstance(process, dict) else None
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return args
    return []


# -- text view ----------------------------------------------------------------------------------


def _short(ref: str) -> str:
    return ref[:12] if re.fullmatch(r"[0-9a-f]{64}", ref) else ref

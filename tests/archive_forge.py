"""Build checkpoint archives for tests, valid or deliberately hostile.

Two ways in: :class:`Forge` writes a small archive from scratch (for tests without Podman), and
:class:`Unpacked` takes a real ferry snapshot apart so a test can change one member and
:func:`seal` it again. Either way the manifest and the sidecar are recomputed over what is really
there, as an attacker with write access to the bucket would do, so a refusal in a test is the
policy's doing, not a checksum's.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from ferry.archive.compression import SUFFIX, Compression, compressing, detect

MANIFEST = "ferry-manifest.json"
DIFF = "rootfs-diff.tar"

#: config.dump and spec.dump of a real Podman 4.3.1 export (busybox loop, one named volume).
REAL_DUMPS = Path(__file__).parent / "data" / "podman-4.3.1"


def real_config(**changes: object) -> dict[str, Any]:
    """The real config.dump as an honest container named "app" of image "img" ("f" * 64), no volume."""
    config: dict[str, Any] = json.loads((REAL_DUMPS / "config.dump").read_text())
    config.update(name="app", rootfsImageID="f" * 64, rootfsImageName="img")
    config.pop("namedVolumes", None)
    config.pop("userVolumes", None)
    config.update(changes)
    return config


def real_spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((REAL_DUMPS / "spec.dump").read_text())
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/vol"]
    return spec


MIN_MEMBERS = {
    "checkpoint/inventory.img": b"inventory",
    "checkpoint/pages-1.img": b"\x00" * 4096,
    "config.dump": json.dumps(real_config()).encode(),
    "spec.dump": json.dumps(real_spec()).encode(),
}


@dataclass
class Entry:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    mode: int = 0o644
    linkname: str = ""
    devmajor: int = 0

    def info(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type = self.type
        info.mode = self.mode
        info.linkname = self.linkname
        info.size = len(self.data) if self.type == tarfile.REGTYPE else 0
        info.devmajor = self.devmajor
        return info


def tar_bytes(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            tar.addfile(e.info(), io.BytesIO(e.data) if e.type == tarfile.REGTYPE else None)
    return buf.getvalue()


@dataclass
class Forge:
    members: dict[str, bytes] = field(default_factory=lambda: dict(MIN_MEMBERS))
    extra: list[Entry] = field(default_factory=list)
    diff: list[Entry] | None = None
    deleted: bytes | None = None
    manifest: bool = True
    manifest_edit: dict[str, object] = field(default_factory=dict)
    compression: str = "zstd"

    def entries(self) -> list[Entry]:
        out = [Entry("checkpoint", type=tarfile.DIRTYPE, mode=0o755)]
        out += [Entry(name, data) for name, data in self.members.items()]
        if self.diff is not None:
            out.append(Entry("rootfs-diff.tar", tar_bytes(self.diff)))
        if self.deleted is not None:
            out.append(Entry("deleted.files", self.deleted))
        out += self.extra
        return out

    def plain(self) -> bytes:
        entries = self.entries()
        if self.manifest:
            digests = [
                {"name": e.name, "size": len(e.data), "sha256": hashlib.sha256(e.data).hexdigest()}
                for e in entries
                if e.type == tarfile.REGTYPE
            ]
            manifest: dict[str, object] = {
                "format": "ferry-checkpoint",
                "version": 1,
                "container": {"name": "app", "id": "a" * 64, "image_id": "f" * 64, "image_name": "img"},
                "source": {"host": "h", "kernel": "k", "criu": "4.1.1", "podman": "4.3.1", "runtime": "runc"},
                "mode": "stop",
                "created": "2026-11-27T00:00:00.000Z",
                "members": digests,
                "timestamps": {},
                "rootfs": {},
            }
            manifest.update(self.manifest_edit)
            entries.append(Entry("ferry-manifest.json", json.dumps(manifest).encode()))
        return tar_bytes(entries)

    def bytes(self) -> bytes:
        buf = io.BytesIO()
        with compressing(buf, self.compression) as sink:  # type: ignore[arg-type]
            sink.write(self.plain())
        return buf.getvalue()


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


# ---------------------------------------------------------------------------------------------
# Real archives taken apart and re-packed: one member changed, manifest and sidecar recomputed.


@dataclass
class Member:
    info: tarfile.TarInfo
    data: bytes | None  # None: not a regular file
    zeros: int = 0  # a regular file of this many zero bytes, generated while packing

    @classmethod
    def of(cls, entry: Entry) -> Member:
        return cls(entry.info(), entry.data if entry.type == tarfile.REGTYPE else None)

    @property
    def regular(self) -> bool:
        return self.data is not None or self.zeros > 0


@dataclass
class Unpacked:
    """A valid archive taken apart: its members before the manifest, and the manifest."""

    members: list[Member]
    manifest: dict[str, Any]
    compression: Compression
    image_link: bool = False  # its image has /data/link -> /

    @classmethod
    def parse(cls, archive: bytes, *, image_link: bool = False) -> Unpacked:
        compression = detect(archive[:512])
        members: list[Member] = []
        manifest: dict[str, Any] = {}
        with tarfile.open(fileobj=io.BytesIO(decompress(archive, compression)), mode="r:") as tar:
            for info in tar:
                f = tar.extractfile(info) if info.isreg() else None
                data = f.read() if f is not None else None
                if info.name == MANIFEST and data is not None:
                    manifest = json.loads(data)
                else:
                    members.append(Member(info, data))
        if not manifest:
            raise ValueError("the base archive has no ferry manifest")
        return cls(members, manifest, compression, image_link)

    def clone(self, compression: Compression | None = None) -> Unpacked:
        out = copy.deepcopy(self)
        out.compression = compression or self.compression
        return out

    def find(self, name: str) -> Member:
        return next(m for m in self.members if m.info.name == name)

    def set(self, name: str, data: bytes) -> None:
        """Replace a member's bytes, or add it (before the manifest) when absent."""
        if any(m.info.name == name for m in self.members):
            member = self.find(name)
            member.data, member.info.size = data, len(data)
        else:
            self.members.append(Member.of(Entry(name, data)))

    def remove(self, name: str) -> None:
        self.members = [m for m in self.members if m.info.name != name]

    def diff(self) -> list[Member]:
        if not any(m.info.name == DIFF for m in self.members):
            return []
        data = self.find(DIFF).data or b""
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            return [Member(i, _read(tar, i)) for i in tar]

    def add_to_diff(self, entries: list[Entry]) -> None:
        self.set(DIFF, pack_tar([*self.diff(), *(Member.of(e) for e in entries)]))

    def digests(self) -> list[dict[str, Any]]:
        return [
            {"name": m.info.name, "size": len(m.data), "sha256": sha256(m.data)}
            for m in self.members
            if m.data is not None
        ]

    def recomputed(self, **edit: Any) -> dict[str, Any]:
        return {**self.manifest, "members": self.digests(), **edit}

    def has(self, name: str) -> bool:
        return any(m.info.name == name for m in self.members)

    def json(self, name: str) -> Any:
        """A JSON member, parsed (config.dump, spec.dump, deleted.files, network.status)."""
        return json.loads(self.find(name).data or b"null")

    def set_json(self, name: str, value: Any) -> None:
        self.set(name, json.dumps(value).encode())

    def tar(self, name: str) -> list[Member]:
        """The entries of a nested tar member (devshm-checkpoint.tar, volumes/<name>.tar)."""
        with tarfile.open(fileobj=io.BytesIO(self.find(name).data or b""), mode="r:") as tar:
            return [Member(i, _read(tar, i)) for i in tar]

    def set_tar(self, name: str, members: list[Member], tar_format: int = tarfile.PAX_FORMAT) -> None:
        self.set(name, pack_tar(members, tar_format))

    def seal(self, filename_stem: str) -> Sealed:
        """Re-pack with a manifest and a sidecar recomputed over the members as they are now."""
        manifest = self.recomputed()
        data = pack([*self.members, manifest_member(manifest)], self.compression)
        filename = filename_stem + SUFFIX[self.compression]
        return Sealed(filename, data, sidecar_json(filename, data, self.compression, manifest))


@dataclass(frozen=True)
class Sealed:
    """An archive ready for a store: its file name, bytes and the sidecar to put next to it."""

    filename: str
    data: bytes
    sidecar: bytes | None

    def put(self, store: Path, container: str = "app") -> str:
        """Place the archive (and its sidecar, if any) in a file:// store; return the archive URL."""
        folder = store / container
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.filename
        path.write_bytes(self.data)
        if self.sidecar is not None:
            (folder / (self.filename + ".ferry.json")).write_bytes(self.sidecar)
        return f"file://{path}"


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes | None:
    f = tar.extractfile(info) if info.isreg() else None
    return f.read() if f is not None else None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decompress(data: bytes, compression: Compression) -> bytes:
    if compression == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
        return reader.read()
    if compression == "gzip":
        return gzip.decompress(data)
    return data


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        super().__init__()
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        memoryview(buffer)[:n] = bytes(n)
        self._left -= n
        return n


def _write_members(tar: tarfile.TarFile, members: list[Member]) -> None:
    for m in members:
        info = copy.copy(m.info)
        if m.zeros:
            info.size = m.zeros
            tar.addfile(info, io.BufferedReader(_Zeros(m.zeros), buffer_size=1 << 20))
        elif m.data is not None:
            info.size = len(m.data)
            tar.addfile(info, io.BytesIO(m.data))
        else:
            info.size = 0
            tar.addfile(info)


def pack_tar(members: list[Member], tar_format: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tar_format) as tar:
        _write_members(tar, members)
    return buf.getvalue()


def pack(members: list[Member], compression: Compression) -> bytes:
    """Tar and compress, streaming: a bomb member never exists in memory uncompressed."""
    buf = io.BytesIO()
    with compressing(buf, compression) as sink, tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _write_members(tar, members)
    return buf.getvalue()


def manifest_member(manifest: dict[str, Any] | bytes) -> Member:
    data = manifest if isinstance(manifest, bytes) else json.dumps(manifest, indent=1, sort_keys=True).encode()
    return Member.of(Entry(MANIFEST, data))


def sidecar_json(filename: str, data: bytes, compression: Compression, manifest: dict[str, Any]) -> bytes:
    record = {
        "archive": filename,
        "size": len(data),
        "sha256": sha256(data),
        "compression": compression,
        "manifest": manifest,
    }
    return json.dumps(record, indent=1, sort_keys=True).encode()


# ---------------------------------------------------------------------------------------------
# The sentinel: a tree outside every container root that no refused archive may change.


def make_sentinel(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "victim").write_bytes(b"ferry must never write, link or delete this file\n")
    (root / "sub" / "deeper" / "data.bin").write_bytes(os.urandom(8192))
    (root / "sub" / "link").symlink_to("../victim")
    tool = root / "tool"
    tool.write_bytes(b"#!/bin/sh\necho sentinel\n")
    tool.chmod(0o755)
    return root


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every name, type, mode, owner, size, time, link count and byte below ``root`` (inclusive)."""
    state = {".": _node(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            state[str(path.relative_to(root))] = _node(path)
    return state


def _node(path: Path) -> tuple[Any, ...]:
    st = path.lstat()
    meta = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_nlink)
    if stat.S_ISREG(st.st_mode):
        return (*meta, sha256(path.read_bytes()))
    if stat.S_ISLNK(st.st_mode):
        return (*meta, os.readlink(path))
    return meta


def deep_json(depth: int, innermost: str = '"x"') -> bytes:
    """``[[[...]]]`` nested ``depth`` deep: past any recursive parser's stack."""
    return b"[" * depth + innermost.encode() + b"]" * depth

"""Build checkpoint archives in memory for tests, valid or deliberately hostile.

``forge`` writes whatever entries it is given and then a manifest whose hashes match them, so a
refusal in a test is the policy's doing, not a checksum's.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from ferry.archive.compression import compressing

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

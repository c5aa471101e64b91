"""ferry's manifest: what an archive holds and where it came from.

It travels as the last member of the archive (``ferry-manifest.json``) and, with the hash of the
whole archive added, as a sidecar object next to it in the store. The sidecar is written last:
no sidecar, no archive.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ferry.archive import safejson
from ferry.errors import MalformedMemberError, UnsafeArchiveError, UnsupportedArchiveError

FORMAT = "ferry-checkpoint"
VERSION = 1


@dataclass(frozen=True)
class MemberDigest:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Source:
    host: str = ""
    kernel: str = ""
    criu: str = ""
    podman: str = ""
    runtime: str = ""


@dataclass(frozen=True)
class ContainerRef:
    name: str
    id: str
    image_id: str = ""
    image_name: str = ""


@dataclass(frozen=True)
class Manifest:
    container: ContainerRef
    source: Source
    mode: str  # "stop" or "leave-running"
    created: str  # ISO 8601, UTC, when the dump finished
    members: tuple[MemberDigest, ...] = ()
    timestamps: dict[str, str] = field(default_factory=dict)
    rootfs: dict[str, int] = field(default_factory=dict)  # files, bytes, deleted
    run: str = ""  # the Prefect flow run that wrote it: how a migration finds its archive
    format: str = FORMAT
    version: int = VERSION
    #: The CRIU state the dump was allowed to take: {"tcp_established": bool, "file_locks": bool}.
    #: Absent from manifests written before ferry recorded it (and left out when empty, so their
    #: canonical form, and so their signatures, stay as they were).
    dump_options: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.dump_options:
            del out["dump_options"]
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw = safejson.loads(data, what="The ferry manifest", max_bytes=64 << 20, max_depth=8)
            return cls.from_dict(raw)
        except MalformedMemberError as exc:
            raise UnsupportedArchiveError(f"{exc} It is malformed.") from exc
        except (UnsupportedArchiveError, UnsafeArchiveError):
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UnsupportedArchiveError(f"The ferry manifest is malformed: {exc}.") from exc

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise UnsupportedArchiveError("The ferry manifest does not say format 'ferry-checkpoint'.")
        version = raw.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise UnsupportedArchiveError(
                f"The archive was written in ferry archive format version {version!r}; this ferry "
                f"reads up to version {VERSION}. Upgrade ferry on this host to restore it."
            )
        members = tuple(_member(m) for m in raw["members"])
        return cls(
            container=ContainerRef(**_strs(raw["container"])),
            source=Source(**_strs(raw["source"])),
            mode=str(raw["mode"]),
            created=str(raw["created"]),
            members=members,
            timestamps=_strs(raw.get("timestamps", {})),
            rootfs={str(k): int(v) for k, v in dict(raw.get("rootfs", {})).items()},
            run=str(raw.get("run", "")),
            format=FORMAT,
            version=version,
            dump_options=_bools(raw.get("dump_options", {})),
        )


@dataclass(frozen=True)
class Sidecar:
    """The store-side record of one complete archive."""

    archive: str  # object name, relative to the sidecar's directory
    size: int
    sha256: str
    compression: str
    manifest: Manifest
    signature: str = ""  # "hmac-sha256:<hex>" over the rest (ferry.archive.signing)
    encryption: str = ""  # scheme when the stored bytes are ciphertext (ferry.archive.crypto)
    plain_size: int = 0  # size and sha256 of the decrypted archive, when encrypted
    plain_sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["manifest"] = self.manifest.as_dict()
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Sidecar:
        try:
            raw = safejson.loads(data, what="The archive's sidecar", max_bytes=64 << 20, max_depth=8)
            return cls(
                archive=str(raw["archive"]),
                size=int(raw["size"]),
                sha256=str(raw["sha256"]),
                compression=str(raw["compression"]),
                manifest=Manifest.from_dict(raw["manifest"]),
                signature=str(raw.get("signature", "")),
                encryption=str(raw.get("encryption", "")),
                plain_size=int(raw.get("plain_size", 0)),
                plain_sha256=str(raw.get("plain_sha256", "")),
            )
        except MalformedMemberError as exc:
            raise UnsupportedArchiveError(f"{exc} It is malformed.") from exc
        except (UnsupportedArchiveError, UnsafeArchiveError):
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise UnsupportedArchiveError(f"The archive's sidecar manifest is malformed: {exc}.") from exc


def _member(raw: Any) -> MemberDigest:
    name, size, digest = raw["name"], raw["size"], raw["sha256"]
    if not isinstance(name, str) or not isinstance(size, int) or not isinstance(digest, str):
        raise TypeError(f"member entry {raw!r} has the wrong types")
    if size < 0 or len(digest) != 64:
        raise ValueError(f"member entry {raw!r} has a bad size or sha256")
    return MemberDigest(name, size, digest)


def _strs(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise TypeError(f"expected an object, got {type(raw).__name__}")
    return {str(k): str(v) for k, v in raw.items()}


def _bools(raw: Any) -> dict[str, bool]:
    if not isinstance(raw, dict) or not all(isinstance(v, bool) for v in raw.values()):
        raise TypeError(f"dump_options must map names to true/false, got {raw!r}")
    return {str(k): v for k, v in raw.items()}

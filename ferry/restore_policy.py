"""What a restoring host lets an archive ask for beyond an ordinary container.

Nothing privileged travels by default. An operator who restores containers that were created with
extra privileges writes a policy file on the *restoring* host (never read from an archive):

    /etc/ferry/restore-policy.json   (or the file named by FERRY_RESTORE_POLICY)
    {
      "capabilities": ["CAP_NET_ADMIN"],       extra capabilities allowed beyond Podman's defaults
      "bind_mounts": ["/srv/shared"],          host directories a bind mount may come from
      "privileged": false,                     --privileged containers
      "host_namespaces": false,                sharing the host's network/pid/ipc/uts namespace
      "devices": false,                        device nodes passed into the container
      "unconfined": false,                     seccomp or AppArmor disabled
      "secrets": false                         Podman secrets looked up by name on this host
    }
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.archive import safejson
from ferry.errors import UsageError

ENV = "FERRY_RESTORE_POLICY"
DEFAULT_PATH = Path("/etc/ferry/restore-policy.json")
_BOOLS = ("privileged", "host_namespaces", "devices", "unconfined", "secrets")


@dataclass(frozen=True)
class RestorePolicy:
    capabilities: frozenset[str] = frozenset()
    bind_mounts: tuple[str, ...] = ()
    privileged: bool = False
    host_namespaces: bool = False
    devices: bool = False
    unconfined: bool = False
    secrets: bool = False

    def allows_bind_source(self, source: str) -> bool:
        clean = os.path.normpath(source)
        return any(clean == root or clean.startswith(root.rstrip("/") + "/") for root in self.bind_mounts)

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> RestorePolicy:
        try:
            raw: Any = safejson.loads(data, what=where, max_bytes=1 << 20, max_depth=4)
        except Exception as exc:  # an UnsafeArchiveError would blame an archive: this is configuration
            raise UsageError(f"The restore policy {where} cannot be read: {exc}") from exc
        if not isinstance(raw, dict):
            raise UsageError(f"The restore policy {where} must be a JSON object.")
        unknown = sorted(set(raw) - {"capabilities", "bind_mounts", *_BOOLS})
        if unknown:
            raise UsageError(f"The restore policy {where} has unknown keys: {', '.join(unknown)}.")
        caps = raw.get("capabilities", [])
        binds = raw.get("bind_mounts", [])
        if not (isinstance(caps, list) and all(isinstance(c, str) for c in caps)):
            raise UsageError(f"The restore policy {where}: 'capabilities' must be a list of names like CAP_NET_ADMIN.")
        if not (isinstance(binds, list) and all(isinstance(b, str) and b.startswith("/") for b in binds)):
            raise UsageError(f"The restore policy {where}: 'bind_mounts' must be a list of absolute host paths.")
        flags = {}
        for key in _BOOLS:
            value = raw.get(key, False)
            if not isinstance(value, bool):
                raise UsageError(f"The restore policy {where}: {key!r} must be true or false.")
            flags[key] = value
        return cls(
            capabilities=frozenset(c.upper() if c.upper().startswith("CAP_") else f"CAP_{c.upper()}" for c in caps),
            bind_mounts=tuple(os.path.normpath(b) for b in binds),
            **flags,
        )


def load() -> RestorePolicy:
    """The restoring host's policy: FERRY_RESTORE_POLICY, else /etc/ferry/restore-policy.json, else none."""
    named = os.environ.get(ENV, "").strip()
    path = Path(named) if named else DEFAULT_PATH
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if named:
            raise UsageError(f"{ENV} names {named}, which does not exist.") from None
        return RestorePolicy()
    except OSError as exc:
        raise UsageError(f"The restore policy {path} cannot be read: {exc.strerror}.") from exc
    return RestorePolicy.from_json(data, where=str(path))

"""Named volumes: which ones an archive carries, and where they live on the restoring host.

Podman exports a container's named volumes as ``volumes/<name>.tar`` and, on ``restore
--import``, creates each volume afresh on this host and unpacks its tar into it. But the OCI
spec it then starts the container with is the archived ``spec.dump``, whose volume mounts still
name the *source* host's volume directories (``<source volume path>/<name>/_data``): on a host
with other paths the container would mount a missing directory, or a different one. ferry
points each named volume's mount at this host's volume directory instead.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from ferry.errors import UnsafeArchiveError

#: Podman's own rule for volume names (libpod/define: NameRegex).
VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def named_volumes(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, container destination) of each named volume listed in ``config.dump``."""
    raw = config.get("namedVolumes") or []
    if not isinstance(raw, list):
        raise UnsafeArchiveError("config.dump: 'namedVolumes' is not a list. Refusing the archive.")
    out = []
    for entry in raw:
        name = entry.get("volumeName") if isinstance(entry, dict) else None
        dest = entry.get("dest") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not VOLUME_NAME.fullmatch(name) or len(name) > 255:
            raise UnsafeArchiveError(f"config.dump names a volume {name!r}, which is not a volume name.")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise UnsafeArchiveError(f"config.dump mounts volume {name!r} at {dest!r}, not a container path.")
        out.append((name, posixpath.normpath(dest)))
    return out


def with_volume_sources(spec: dict[str, Any], volumes: list[tuple[str, str]], volume_path: str) -> dict[str, Any]:
    """The OCI spec with each named volume's mount source set to ``<volume_path>/<name>/_data``. Pure."""
    if not volumes:
        return spec
    by_dest = {dest: name for name, dest in volumes}
    mounts = spec.get("mounts")
    if not isinstance(mounts, list):
        return spec
    fixed = []
    for mount in mounts:
        dest = mount.get("destination") if isinstance(mount, dict) else None
        name = by_dest.get(posixpath.normpath(dest)) if isinstance(dest, str) and dest else None
        if name is None:
            fixed.append(mount)
            continue
        fixed.append({**mount, "source": posixpath.join(volume_path, name, "_data")})
    return {**spec, "mounts": fixed}

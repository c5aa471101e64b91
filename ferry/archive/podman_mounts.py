"""Rebuild the ``mounts`` of ``spec.dump``: what runc mounts into the restored container, as root.

Only kernel file systems (with plain options, sysfs and cgroup read-only unless the restore policy
allows more), named volumes (their source becomes this host's volume path) and host directories
the restore policy allows travel; Podman adds its own files (``MANAGED_BINDS``) itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ferry.archive.jsonfields import POLICY_FIX, Fields, abs_path, empty, no_unknown, refuse
from ferry.archive.rebuild_context import RebuildContext

WHERE = "spec.dump"
#: Mounts Podman replaces on restore with this host's own files.
MANAGED_BINDS = frozenset(
    {"/dev/shm", "/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/run/.containerenv", "/run/secrets"}  # noqa: S108
)
#: Kernel file systems a container may mount, and the sources Podman gives them.
KERNEL_FS = {
    "proc": {"proc"},
    "sysfs": {"sysfs"},
    "tmpfs": {"tmpfs", "shm", "none"},
    "devpts": {"devpts"},
    "mqueue": {"mqueue"},
    "cgroup": {"cgroup"},
    "cgroup2": {"cgroup2", "cgroup"},
}
MOUNT_FLAGS = frozenset(
    [
        "nosuid",
        "noexec",
        "nodev",
        "ro",
        "rw",
        "relatime",
        "norelatime",
        "strictatime",
        "noatime",
        "nodiratime",
        "rprivate",
        "private",
        "rslave",
        "slave",
        "newinstance",
        "tmpcopyup",
        "notmpcopyup",
        "bind",
        "rbind",
        "suid",
        "dev",
        "exec",
    ]
)
MOUNT_VALUE_OPTIONS = ("mode=", "size=", "gid=", "uid=", "ptmxmode=", "nr_inodes=", "nr_blocks=")
BIND_FLAGS = frozenset(
    [
        "bind",
        "rbind",
        "rprivate",
        "private",
        "rslave",
        "slave",
        "ro",
        "rw",
        "nosuid",
        "nodev",
        "noexec",
        "suid",
        "dev",
        "exec",
    ]
)


def rebuild_mounts(raw: list[Any], ctx: RebuildContext, volumes: Mapping[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    managed: set[str] = set()
    for i, item in enumerate(raw):
        m = Fields(item, f"{WHERE} mounts[{i}]")
        dest = abs_path(m.raw("destination"), f"{m.where} destination")
        kind = m.text("type", limit=64)
        source = m.text("source", limit=4096)
        options = m.strs("options")
        m.raw("uidMappings")
        m.raw("gidMappings")
        no_unknown(m, {"destination", "type", "source", "options"})
        if not empty(m.raw("uidMappings")) or not empty(m.raw("gidMappings")):
            raise refuse(f"{m.where} ({dest}) maps user ids")
        if dest in MANAGED_BINDS:
            if dest in managed:
                raise refuse(
                    f"{WHERE} mounts {dest} twice; Podman replaces only the first with this host's file, "
                    "so the second would stay as the archive wrote it"
                )
            managed.add(dest)
            continue  # Podman adds this host's own
        if dest in seen:
            raise refuse(f"{WHERE} mounts {dest} twice")
        seen.add(dest)
        if kind in KERNEL_FS and "bind" not in options and "rbind" not in options:
            out.append(_kernel_mount(m.where, dest, kind, source, options, ctx))
        elif kind == "bind" or "bind" in options or "rbind" in options:
            out.append(_bind_mount(m.where, dest, source, options, ctx, volumes))
        else:
            raise refuse(
                f"{m.where} mounts a {kind!r} file system at {dest}; ferry restores only kernel file "
                "systems, named volumes and Podman's own files"
            )
    return out


def _kernel_mount(
    where: str, dest: str, kind: str, source: str, options: list[str], ctx: RebuildContext
) -> dict[str, Any]:
    if source not in KERNEL_FS[kind]:
        raise refuse(f"{where} mounts {kind} at {dest} from {source!r}")
    for option in options:
        if option not in MOUNT_FLAGS and not option.startswith(MOUNT_VALUE_OPTIONS):
            raise refuse(f"{where} ({dest}) has the mount option {option!r}")
    if kind in ("sysfs", "cgroup", "cgroup2") and "ro" not in options and not ctx.policy.privileged:
        raise refuse(f"{where} mounts {kind} writable at {dest}: the container could change host settings", POLICY_FIX)
    if kind == "proc" and dest != "/proc":
        raise refuse(f"{where} mounts proc at {dest}")
    return {"destination": dest, "type": kind, "source": source, "options": options}


def _bind_mount(
    where: str, dest: str, source: str, options: list[str], ctx: RebuildContext, volumes: Mapping[str, str]
) -> dict[str, Any]:
    for option in options:
        if option not in BIND_FLAGS:
            raise refuse(f"{where} ({dest}) has the bind option {option!r}")
    name = volumes.get(dest)
    if name is not None:
        host = ctx.host
        new_source = f"{host.volume_path.rstrip('/')}/{name}/_data" if host else source
        return {"destination": dest, "type": "bind", "source": new_source, "options": options}
    if source.startswith("/") and ctx.policy.allows_bind_source(source):
        return {"destination": dest, "type": "bind", "source": source, "options": options}
    raise refuse(
        f"{WHERE} bind-mounts the host path {source!r} at {dest}: host paths do not travel with a checkpoint "
        "and would expose this host's files to the container",
        "Use a named volume, or allow that host directory in the restore policy's bind_mounts.",
    )

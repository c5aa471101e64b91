"""What the rebuild of an archive's Podman configuration is measured against.

``HostFacts`` come from the restoring host's own Podman (never from the archive): where it keeps
volumes, its cgroup manager, and the OCI spec it generates for a plain container (its default
capabilities, seccomp profile, AppArmor profile, masked paths and device rules). Without a host
(``ferry verify`` on any machine) Podman's documented defaults stand in, so the same refusals show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ferry.restore_policy import RestorePolicy

#: Podman's default capability set (containers.conf default_capabilities).
DEFAULT_CAPS = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    }
)
DEFAULT_MASKED = (
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
)
DEFAULT_READONLY = ("/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = ({"allow": False, "access": "rwm"},)


@dataclass(frozen=True)
class HostFacts:
    volume_path: str
    cgroup_manager: str
    #: The OCI runtime's name (runc): Podman refuses an archive "created with" another runtime.
    runtime: str
    #: The OCI spec this host's Podman wrote for a throwaway container (see runtime.reference_spec).
    reference: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen, and a plain JSON copy: nothing downstream can mutate the reference.
        object.__setattr__(self, "reference", json.loads(json.dumps(dict(self.reference))))


@dataclass(frozen=True)
class Defaults:
    """The unprivileged baseline an archived spec is compared with."""

    capabilities: frozenset[str]
    masked: tuple[str, ...]
    readonly: tuple[str, ...]
    device_rules: tuple[dict[str, Any], ...]
    seccomp: dict[str, Any] | None  # None: keep the archive's (verify only) or none on this host
    apparmor: str
    selinux: str
    mount_label: str

    @classmethod
    def of(cls, host: HostFacts | None) -> Defaults:
        if host is None or not host.reference:
            return cls(DEFAULT_CAPS, DEFAULT_MASKED, DEFAULT_READONLY, DEFAULT_DEVICE_RULES, None, "", "", "")
        ref = host.reference
        process = ref.get("process") or {}
        linux = ref.get("linux") or {}
        caps = process.get("capabilities") or {}
        return cls(
            capabilities=frozenset(caps.get("bounding") or ()),
            masked=tuple(linux.get("maskedPaths") or ()),
            readonly=tuple(linux.get("readonlyPaths") or ()),
            device_rules=tuple((linux.get("resources") or {}).get("devices") or ()),
            seccomp=linux.get("seccomp"),
            apparmor=str(process.get("apparmorProfile") or ""),
            selinux=str(process.get("selinuxLabel") or ""),
            mount_label=str(linux.get("mountLabel") or ""),
        )


@dataclass(frozen=True)
class RebuildContext:
    policy: RestorePolicy = field(default_factory=RestorePolicy)
    host: HostFacts | None = None
    #: A CRIU configuration file for runc to hand to CRIU (org.criu.config), written by ferry.
    criu_config: str | None = None

"""What a container's OCI spec grants its processes: the ceiling :mod:`ferry.archive.criu_images`
holds CRIU's core images to. Read from the rebuilt ``spec.dump``; odd shapes are refused."""

from __future__ import annotations

from dataclasses import dataclass

from ferry.archive import protowire as pw
from ferry.errors import UnsafeArchiveError

#: Linux resource numbers (include/uapi/asm-generic/resource.h), as OCI names them.
RLIMITS = {
    f"RLIMIT_{name}": number
    for number, name in enumerate(
        [
            "CPU",
            "FSIZE",
            "DATA",
            "STACK",
            "CORE",
            "RSS",
            "NPROC",
            "NOFILE",
            "MEMLOCK",
            "AS",
            "LOCKS",
            "SIGPENDING",
            "MSGQUEUE",
            "NICE",
            "RTPRIO",
            "RTTIME",
        ]
    )
}
CAP_SYS_RESOURCE = 1 << 24

#: Linux capability numbers (include/uapi/linux/capability.h).
CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
)
CAP_BITS = {f"CAP_{name}": bit for bit, name in enumerate(CAPABILITIES)}
#: The capability sets, in the order of CRIU's creds.proto fields.
CAP_SETS = ("effective", "permitted", "inheritable", "bounding", "ambient")


def cap_names(mask: int) -> list[str]:
    return [f"CAP_{CAPABILITIES[b]}" if b < len(CAPABILITIES) else f"capability {b}" for b in _bits(mask)]


def _bits(mask: int) -> list[int]:
    return [b for b in range(mask.bit_length()) if mask >> b & 1]


@dataclass(frozen=True)
class Grants:
    """What a container's OCI spec allows its processes: the ceiling for the CRIU images."""

    effective: int = 0
    permitted: int = 0
    inheritable: int = 0
    bounding: int = 0
    ambient: int = 0
    uid: int = 0
    gid: int = 0
    additional_gids: frozenset[int] = frozenset()
    seccomp: bool = False
    no_new_privs: bool = False
    #: x86_64 system calls every seccomp filter chain must deny (see :mod:`ferry.archive.seccomp_bpf`).
    must_deny: frozenset[int] = frozenset()
    apparmor_profile: str = ""
    selinux_label: str = ""
    #: Hard limits the spec sets (resource number -> hard); a process may lower them, not raise them.
    rlimits: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_spec(cls, spec: object, *, must_deny: frozenset[int] = frozenset()) -> Grants:
        """Read the grants from an OCI spec (a parsed ``spec.dump``); refuses odd shapes.

        ``must_deny``: system calls a filter must deny whatever their arguments, typically
        :func:`ferry.archive.seccomp_bpf.host_default_denials`; checked only when the spec has
        seccomp."""
        where = "spec.dump"
        spec = _obj(spec, where)
        process = _obj(_get(spec, "process", {}), f"{where}: process")
        linux = _obj(_get(spec, "linux", {}), f"{where}: linux")
        caps = _obj(_get(process, "capabilities", {}), f"{where}: process.capabilities")
        masks = {name: _cap_mask(_get(caps, name, []), f"{where}: process.capabilities.{name}") for name in CAP_SETS}
        user = _obj(_get(process, "user", {}), f"{where}: process.user")
        extra = _get(user, "additionalGids", [])
        if not isinstance(extra, list):
            raise UnsafeArchiveError(f"{where}: process.user.additionalGids is not a list.")
        nnp = process.get("noNewPrivileges", False)
        if not isinstance(nnp, bool):
            raise UnsafeArchiveError(f"{where}: process.noNewPrivileges is not true or false.")
        return cls(
            **masks,
            uid=_id(user.get("uid", 0), f"{where}: process.user.uid"),
            gid=_id(user.get("gid", 0), f"{where}: process.user.gid"),
            additional_gids=frozenset(_id(g, f"{where}: process.user.additionalGids") for g in extra),
            seccomp=linux.get("seccomp") is not None,
            no_new_privs=nnp,
            must_deny=must_deny,
            apparmor_profile=_str(_get(process, "apparmorProfile", ""), f"{where}: process.apparmorProfile"),
            selinux_label=_str(_get(process, "selinuxLabel", ""), f"{where}: process.selinuxLabel"),
            rlimits=_rlimits(_get(process, "rlimits", []), f"{where}: process.rlimits"),
        )


def _get(obj: dict[str, object], key: str, default: object) -> object:
    """A JSON member; absent or null reads as the default (Go's encoding/json does the same)."""
    value = obj.get(key)
    return default if value is None else value


def _rlimits(value: object, where: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, list):
        raise UnsafeArchiveError(f"{where} is not a list.")
    out = {}
    for raw in value:
        item = _obj(raw, where)
        kind, hard = item.get("type"), item.get("hard")
        if kind not in RLIMITS or not isinstance(hard, int) or isinstance(hard, bool) or not 0 <= hard < 1 << 64:
            raise UnsafeArchiveError(f"{where}: {item!r} is not a resource limit ferry knows.")
        out[RLIMITS[str(kind)]] = hard
    return tuple(sorted(out.items()))


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise UnsafeArchiveError(f"{where} is not a string.")
    return value


def _obj(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise UnsafeArchiveError(f"{where} is not a JSON object.")
    return value


def _cap_mask(names: object, where: str) -> int:
    if not isinstance(names, list):
        raise UnsafeArchiveError(f"{where} is not a list of capability names.")
    mask = 0
    for name in names:
        if not isinstance(name, str) or name not in CAP_BITS:
            raise UnsafeArchiveError(f"{where}: {name!r} is not a capability ferry knows.")
        mask |= 1 << CAP_BITS[name]
    return mask


def _id(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= pw.MASK32:
        raise UnsafeArchiveError(f"{where} is not a valid numeric id.")
    return value

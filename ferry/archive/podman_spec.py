"""Rebuild ``spec.dump`` (the OCI runtime spec runc restores with) for the restoring host.

runc runs the hooks a spec lists, mounts what it names, and hands CRIU the configuration file of
the ``org.criu.config`` annotation: as root, on the restoring host. So the spec Podman gets is
written by ferry, field by field, from what the archive says and what this host's Podman would
generate itself (:class:`ferry.archive.rebuild_context.Defaults`):

* **travels** (checked): command, environment, working directory, user and groups, rlimits,
  terminal, hostname, resource limits, namespaced sysctls, read-only root, kernel file-system mounts
  (proc, sysfs, tmpfs, devpts, mqueue, cgroup) with plain options, named-volume mounts, capabilities
  within this host's defaults, a subset of annotations (mounts: :mod:`ferry.archive.podman_mounts`);
* **rebuilt for this host**: named-volume sources (this host's volume path), the seccomp profile,
  AppArmor and SELinux labels, device rules, masked and read-only paths (never fewer than the
  defaults); Podman's own bind mounts (/etc/hosts, /etc/resolv.conf, /etc/hostname, /dev/shm,
  /run/.containerenv, /run/secrets) are left out so Podman adds this host's; the cgroup path and
  the network namespace path are left to Podman;
* **refused** unless the host's restore policy allows it: hooks (never), bind mounts of host
  paths, extra capabilities, devices, host namespaces, user namespaces, seccomp or AppArmor
  disabled, ``org.criu.config``, anything unknown in the privileged sections.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ferry.archive import criu_config
from ferry.archive.jsonfields import POLICY_FIX, Fields, abs_path, empty, no_unknown, refuse, string
from ferry.archive.podman_mounts import rebuild_mounts
from ferry.archive.rebuild_context import Defaults, RebuildContext

WHERE = "spec.dump"
CRIU_CONFIG_ANNOTATION = criu_config.ANNOTATION
NAMESPACES = frozenset({"pid", "network", "ipc", "uts", "mount", "cgroup"})
PRIVATE_NAMESPACES = frozenset({"pid", "network", "ipc", "uts", "mount"})
CAP_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
_CAP = re.compile(r"^CAP_[A-Z_]{1,32}$")
_RLIMIT = re.compile(r"^RLIMIT_[A-Z]{1,16}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
_ANNOTATION_PREFIXES = ("io.podman.annotations.", "io.kubernetes.cri-o.", "org.opencontainers.image.")
_ANNOTATIONS = frozenset({"io.container.manager"})
_SYSCTL_PREFIXES = ("net.", "kernel.shm", "kernel.msg", "fs.mqueue.")
_SYSCTLS = frozenset({"kernel.sem", "kernel.domainname", "kernel.hostname"})
_PROPAGATION = frozenset({"", "private", "rprivate", "slave", "rslave"})
_RESOURCE_KEYS = frozenset({"memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "unified"})
_TOP_KEYS = frozenset({"ociVersion", "process", "root", "hostname", "domainname", "mounts", "annotations", "linux"})
_PROCESS_KEYS = frozenset(
    {
        "terminal",
        "consoleSize",
        "user",
        "args",
        "env",
        "cwd",
        "capabilities",
        "rlimits",
        "noNewPrivileges",
        "apparmorProfile",
        "oomScoreAdj",
        "selinuxLabel",
    }
)
_LINUX_KEYS = frozenset(
    {
        "namespaces",
        "uidMappings",
        "gidMappings",
        "devices",
        "resources",
        "cgroupsPath",
        "sysctl",
        "maskedPaths",
        "readonlyPaths",
        "seccomp",
        "rootfsPropagation",
        "mountLabel",
    }
)


def rebuild_spec(value: Any, ctx: RebuildContext, volumes: Mapping[str, str]) -> dict[str, Any]:
    """The spec for Podman, from the archived one; ``volumes`` maps destinations to volume names."""
    spec = Fields(value, WHERE)
    defaults = Defaults.of(ctx.host)
    _refuse_hooks(spec.raw("hooks"))
    out: dict[str, Any] = {"ociVersion": spec.text("ociVersion", "1.0.2-dev", limit=32)}
    out["process"] = _process(spec.obj("process"), defaults, ctx)
    root = spec.obj("root")
    root.text("path")  # the source host's mount point: Podman sets this host's
    out["root"] = {"path": "rootfs", "readonly": root.flag("readonly")}
    no_unknown(root, {"path", "readonly"})
    for key in ("hostname", "domainname"):
        name = spec.text(key, limit=253)
        if name and not _HOSTNAME.match(name):
            raise refuse(f"{WHERE} {key} {name!r} is not a host name")
        if name:
            out[key] = name
    out["mounts"] = rebuild_mounts(spec.seq("mounts"), ctx, volumes)
    out["annotations"] = _annotations(spec.obj("annotations"), ctx)
    out["linux"] = _linux(spec.obj("linux"), defaults, ctx)
    no_unknown(spec, _TOP_KEYS | {"hooks"})
    return out


def _refuse_hooks(hooks: Any) -> None:
    if hooks is None:
        return
    if not isinstance(hooks, dict) or any(not empty(v) for v in hooks.values()):
        raise refuse(
            f"{WHERE} lists OCI hooks ({', '.join(sorted(hooks)) if isinstance(hooks, dict) else 'malformed'}): "
            "commands runc would run on this host as root during the restore. Hooks never travel in an archive",
            "Configure hooks on the restoring host itself (Podman's hooks directory) if the container needs them.",
        )


def _process(p: Fields, defaults: Defaults, ctx: RebuildContext) -> dict[str, Any]:
    policy = ctx.policy
    out: dict[str, Any] = {}
    if p.flag("terminal"):
        out["terminal"] = True
    console = p.obj("consoleSize")
    if console.has("height") or console.has("width"):
        out["consoleSize"] = {
            "height": console.num("height", low=0, high=65535),
            "width": console.num("width", low=0, high=65535),
        }
    user = p.obj("user")
    out["user"] = {"uid": user.num("uid", low=0, high=2**32 - 2), "gid": user.num("gid", low=0, high=2**32 - 2)}
    if user.has("umask"):
        out["user"]["umask"] = user.num("umask", low=0, high=0o777)
    gids = [_uint(g, f"{WHERE} process.user.additionalGids") for g in user.seq("additionalGids")]
    if gids:
        out["user"]["additionalGids"] = gids
    user.text("username")
    no_unknown(user, {"uid", "gid", "umask", "additionalGids", "username"})
    args = p.strs("args")
    if not args:
        raise refuse(f"{WHERE} process.args is empty: there is no command to restore")
    out["args"] = args
    out["env"] = p.strs("env")
    out["cwd"] = abs_path(p.raw("cwd") or "/", f"{WHERE} process.cwd")
    out["capabilities"] = _capabilities(p.obj("capabilities"), defaults, ctx)
    rlimits = []
    for i, raw in enumerate(p.seq("rlimits")):
        r = Fields(raw, f"{WHERE} process.rlimits[{i}]")
        kind = r.text("type", limit=32)
        if not _RLIMIT.match(kind):
            raise refuse(f"{r.where} type {kind!r} is not an rlimit")
        rlimits.append({"type": kind, "hard": r.num("hard", low=0), "soft": r.num("soft", low=0)})
    if rlimits:
        out["rlimits"] = rlimits
    out["noNewPrivileges"] = p.flag("noNewPrivileges")
    apparmor = p.text("apparmorProfile", limit=256)
    if apparmor == "unconfined" and defaults.apparmor and not (policy.unconfined or policy.privileged):
        raise refuse(f"{WHERE} runs the container without AppArmor confinement (unconfined)", POLICY_FIX)
    profile = apparmor if apparmor == "unconfined" and (policy.unconfined or policy.privileged) else defaults.apparmor
    if profile:
        out["apparmorProfile"] = profile
    p.text("selinuxLabel", limit=1024)
    if defaults.selinux:
        out["selinuxLabel"] = defaults.selinux
    oom = p.num("oomScoreAdj", low=-1000, high=1000)
    if oom < 0 and not policy.privileged:
        raise refuse(f"{WHERE} process.oomScoreAdj {oom} shields the container from the OOM killer", POLICY_FIX)
    if p.has("oomScoreAdj"):
        out["oomScoreAdj"] = oom
    no_unknown(p, _PROCESS_KEYS)
    return out


def _uint(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
        raise refuse(f"{where} holds {value!r}, not an id")
    return value


def _capabilities(caps: Fields, defaults: Defaults, ctx: RebuildContext) -> dict[str, list[str]]:
    allowed = defaults.capabilities | ctx.policy.capabilities
    out: dict[str, list[str]] = {}
    for key in CAP_SETS:
        names = caps.strs(key)
        for name in names:
            if not _CAP.match(name):
                raise refuse(f"{caps.field(key)} holds {name!r}, not a capability name")
        extra = sorted(set(names) - allowed)
        if extra and not ctx.policy.privileged:
            raise refuse(
                f"{caps.field(key)} grants {', '.join(extra)} beyond this host's default capabilities",
                POLICY_FIX,
            )
        if names:
            out[key] = list(dict.fromkeys(names))
    no_unknown(caps, set(CAP_SETS))
    return out


def _annotations(a: Fields, ctx: RebuildContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in a.unread():
        value = string(a.raw(key), f"{WHERE} annotations[{key!r}]")
        if key.casefold() == CRIU_CONFIG_ANNOTATION:
            raise refuse(
                f"{WHERE} names a CRIU configuration file ({CRIU_CONFIG_ANNOTATION}={value!r}); CRIU options "
                "can run commands on this host during the restore"
            )
        if key == "io.podman.annotations.privileged" and value.upper() != "FALSE" and not ctx.policy.privileged:
            raise refuse(f"{WHERE} marks the container privileged", POLICY_FIX)
        if key in _ANNOTATIONS or key.startswith(_ANNOTATION_PREFIXES):
            out[key] = value
    if ctx.criu_config:
        out[CRIU_CONFIG_ANNOTATION] = ctx.criu_config
    return out


def _linux(linux: Fields, defaults: Defaults, ctx: RebuildContext) -> dict[str, Any]:
    policy = ctx.policy
    out: dict[str, Any] = {}
    out["namespaces"] = _namespaces(linux.seq("namespaces"), ctx)
    for key in ("uidMappings", "gidMappings"):
        if not empty(linux.raw(key)):
            raise refuse(f"{WHERE} linux.{key}: user namespaces do not travel")
    devices = linux.seq("devices")
    if devices and not (policy.devices or policy.privileged):
        raise refuse(f"{WHERE} passes {len(devices)} device node(s) into the container", POLICY_FIX)
    if devices:
        out["devices"] = [_device(d, i) for i, d in enumerate(devices)]
    out["resources"] = _resources(linux.obj("resources"), defaults, ctx)
    linux.raw("cgroupsPath")  # Podman derives this host's cgroup path itself
    sysctl = linux.str_map("sysctl")
    for key in sysctl:
        if not (key in _SYSCTLS or key.startswith(_SYSCTL_PREFIXES)):
            raise refuse(f"{WHERE} sets the sysctl {key}, which is not namespaced: it would change this host")
    if sysctl:
        out["sysctl"] = sysctl
    masked = [abs_path(p, f"{WHERE} linux.maskedPaths") for p in linux.strs("maskedPaths")]
    readonly = [abs_path(p, f"{WHERE} linux.readonlyPaths") for p in linux.strs("readonlyPaths")]
    if policy.privileged:
        out["maskedPaths"], out["readonlyPaths"] = masked, readonly
    else:
        out["maskedPaths"] = list(dict.fromkeys([*defaults.masked, *masked]))
        out["readonlyPaths"] = list(dict.fromkeys([*defaults.readonly, *readonly]))
    seccomp = linux.raw("seccomp")
    if empty(seccomp):
        if not (policy.unconfined or policy.privileged):
            raise refuse(f"{WHERE} runs the container without seccomp filtering", POLICY_FIX)
    else:
        action = Fields(seccomp, f"{WHERE} linux.seccomp").text("defaultAction", limit=64)
        if action == "SCMP_ACT_ALLOW" and not (policy.unconfined or policy.privileged):
            raise refuse(f"{WHERE} has a seccomp profile that allows every system call", POLICY_FIX)
        out["seccomp"] = defaults.seccomp if ctx.host is not None and defaults.seccomp else seccomp
    propagation = linux.text("rootfsPropagation", limit=16)
    if propagation not in _PROPAGATION:
        raise refuse(f"{WHERE} linux.rootfsPropagation {propagation!r} would share mounts with this host")
    if propagation:
        out["rootfsPropagation"] = propagation
    linux.text("mountLabel", limit=1024)
    if defaults.mount_label:
        out["mountLabel"] = defaults.mount_label
    no_unknown(linux, _LINUX_KEYS)
    return out


def _namespaces(raw: list[Any], ctx: RebuildContext) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    kinds: set[str] = set()
    for i, item in enumerate(raw):
        ns = Fields(item, f"{WHERE} linux.namespaces[{i}]")
        kind = ns.text("type", limit=16)
        path = ns.text("path", limit=4096)
        no_unknown(ns, {"type", "path"})
        if kind == "user":
            raise refuse(f"{WHERE} uses a user namespace; user namespaces do not travel")
        if kind not in NAMESPACES:
            raise refuse(f"{ns.where} is a {kind!r} namespace, which ferry does not restore")
        if kind in kinds:
            raise refuse(f"{WHERE} lists the {kind} namespace twice")
        kinds.add(kind)
        if path and kind != "network":
            raise refuse(f"{WHERE} joins an existing {kind} namespace at {path}", POLICY_FIX)
        out.append({"type": kind})  # the network namespace path is this host's, set by Podman
    shared = sorted(PRIVATE_NAMESPACES - kinds)
    if shared and not (ctx.policy.host_namespaces or ctx.policy.privileged):
        raise refuse(f"{WHERE} shares this host's {', '.join(shared)} namespace(s) with the container", POLICY_FIX)
    return out


def _device(raw: Any, i: int) -> dict[str, Any]:
    d = Fields(raw, f"{WHERE} linux.devices[{i}]")
    path = abs_path(d.raw("path"), f"{d.where} path")
    if not path.startswith("/dev/"):
        raise refuse(f"{d.where} creates a device node at {path}, outside /dev")
    kind = d.text("type", limit=1)
    if kind not in ("c", "b", "u", "p"):
        raise refuse(f"{d.where} has the device type {kind!r}")
    out: dict[str, Any] = {"path": path, "type": kind, "major": d.num("major", low=0), "minor": d.num("minor", low=0)}
    for key in ("fileMode", "uid", "gid"):
        if d.has(key):
            out[key] = d.num(key, low=0, high=2**32 - 1)
    no_unknown(d, {"path", "type", "major", "minor", "fileMode", "uid", "gid"})
    return out


def _resources(r: Fields, defaults: Defaults, ctx: RebuildContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rules = r.seq("devices")
    if ctx.policy.devices or ctx.policy.privileged:
        out["devices"] = [_device_rule(x, i) for i, x in enumerate(rules)]
    else:
        out["devices"] = [dict(x) for x in defaults.device_rules]
    for key in sorted(_RESOURCE_KEYS):
        value = r.raw(key)
        if value is None:
            continue
        if key == "unified":
            value = r.str_map(key)
        out[key] = _scalars(value, f"{r.field(key)}")
    no_unknown(r, _RESOURCE_KEYS | {"devices"})
    return out


def _device_rule(raw: Any, i: int) -> dict[str, Any]:
    d = Fields(raw, f"{WHERE} linux.resources.devices[{i}]")
    out: dict[str, Any] = {"allow": d.flag("allow"), "access": d.text("access", limit=3)}
    if d.has("type"):
        out["type"] = d.text("type", limit=1)
    for key in ("major", "minor"):
        if d.has(key):
            out[key] = d.num(key, low=-1)
    no_unknown(d, {"allow", "access", "type", "major", "minor"})
    return out


def _scalars(value: Any, where: str) -> Any:
    """Resource limits: numbers, strings, booleans, and lists/objects of those (depth already bounded)."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return string(value, where, limit=4096)
    if isinstance(value, list):
        return [_scalars(v, where) for v in value[:4096]]
    if isinstance(value, dict):
        return {string(k, where, limit=256): _scalars(v, f"{where}.{k}") for k, v in value.items()}
    raise refuse(f"{where} holds an unexpected value")

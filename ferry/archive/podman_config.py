"""Rebuild ``config.dump`` (libpod's container configuration) and the small JSON members.

Podman creates the restored container from ``config.dump`` as it stands, host paths included:
``conmonPidFile`` and ``pid_file`` are written to, ``mounts`` are unmounted by a later
``podman rm``, ``rootfs`` replaces the container's root, volume options can bind host directories,
``secrets`` are looked up on this host. ferry writes a new one with:

* **travels** (checked): id, name, image id and name, command and entrypoint, labels, user and
  groups, stop signal and timeout, named volumes (name, destination, plain options), port
  mappings, networks (names, static IP/MAC, aliases), DNS and /etc/hosts entries, health check,
  restart policy, log driver and tag, time zone name, umask, shm size;
* **rebuilt for this host**: the spec (see :mod:`ferry.archive.podman_spec`), the cgroup manager,
  ID mappings (the host's);
* **left to Podman** (dropped): static/secrets/shm dirs, ``mounts``, pid files, log path, cgroup
  parent, lock, OCI runtime, SELinux labels, the create command;
* **refused**: privileged mode, another root file-system, overlay/image volumes, volume driver
  options, secrets, pods and namespace sharing with other containers, devices, user namespaces,
  preserved file descriptors, anything unknown that is set.
"""

from __future__ import annotations

import re
from typing import Any

from ferry.archive import jsonfields
from ferry.archive.jsonfields import POLICY_FIX, Fields, abs_path, empty, no_unknown, string
from ferry.archive.podman_network import exposed_ports, ip_address, mac_address, networks, port_mapping
from ferry.archive.rebuild_context import RebuildContext
from ferry.errors import UnsafeArchiveError

WHERE = "config.dump"
_ID = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,252}$")
#: What an image id and a container or volume name must look like (also for the manifest's claims).
ID_RE, NAME_RE = _ID, _NAME
_TZ = re.compile(r"^(local|[A-Za-z0-9_+-]{1,64}(/[A-Za-z0-9_+-]{1,64}){0,3})$")
_VOLUME_OPTIONS = frozenset(
    [
        "rw",
        "ro",
        "rprivate",
        "private",
        "rslave",
        "slave",
        "rshared",
        "shared",
        "rbind",
        "bind",
        "nosuid",
        "suid",
        "nodev",
        "dev",
        "noexec",
        "exec",
        "z",
        "Z",
        "U",
        "copy",
        "nocopy",
    ]
)

#: Fields that may travel when set, with the reader that checks them.
_STRINGS = {
    "RawImageName": 4096,
    "rootfsImageName": 4096,
    "user": 256,
    "logTag": 256,
    "createdTime": 64,
    "passwd_entry": 4096,
}
_ENUMS = {
    "sdnotifyMode": {"", "container", "conmon", "ignore"},
    "networkMode": {"", "bridge", "none", "private", "slirp4netns", "pasta"},
    "cgroupsMode": {"", "enabled"},
    "restart_policy": {"", "no", "on-failure", "always", "unless-stopped"},
    "logDriver": {"", "k8s-file", "journald", "none"},
}
_BOOLS = (
    "createWorkingDir",
    "passwd",
    "stdin",
    "postConfigureNetNS",
    "UseImageResolvConf",
    "UseImageHosts",
    "NoShm",
    "NOShmShare",
    "volatile",
    "createNetNS",
)
_INTS = {
    "shmSize": (0, 2**63 - 1),
    "stopSignal": (0, 64),
    "stopTimeout": (0, 2**32 - 1),
    "timeout": (0, 2**32 - 1),
    "logSize": (-1, 2**63 - 1),
    "restart_retries": (0, 2**32 - 1),
    "healthcheck_on_failure_action": (0, 4),
}
_STRING_LISTS = (
    "command",
    "entrypoint",
    "userVolumes",
    "groups",
    "dnsSearch",
    "dnsOption",
    "hostsAdd",
    "chroot_directories",
)
#: Host-specific: Podman derives this host's values when they are absent.
_DROPPED = (
    "spec",
    "lockID",
    "CreateCommand",
    "ShmDir",
    "staticDir",
    "mounts",
    "secretsPath",
    "conmonPidFile",
    "pid_file",
    "logPath",
    "cgroupParent",
    "cgroupManager",
    "namespace",
    "ProcessLabel",
    "MountLabel",
    "storageOpts",
    "init_container_type",
    "networks",
    "portMappings",
    "idMappingsOptions",
    "labelopts",
)
#: Privileged or host-bound: refused whenever they are set.
_REFUSED = {
    "rootfs": "replaces the container's root file-system with a host directory",
    "rootfs_overlay": "mounts a host directory as the container's root",
    "overlayVolumes": "mounts host directories as overlay volumes",
    "ctrImageVolumes": "mounts other images into the container",
    "image_volumes": "mounts other images into the container",
    "pod": "belongs to a pod (ferry restores single containers)",
    "Dependencies": "depends on other containers",
    "ipcNsCtr": "joins another container's IPC namespace",
    "mountNsCtr": "joins another container's mount namespace",
    "netNsCtr": "joins another container's network namespace",
    "pidNsCtr": "joins another container's PID namespace",
    "userNsCtr": "joins another container's user namespace",
    "utsNsCtr": "joins another container's UTS namespace",
    "cgroupNsCtr": "joins another container's cgroup namespace",
    "noCgroups": "runs outside any cgroup",
    "isService": "is a service container",
    "pause": "is an infra container",
    "preserveFds": "inherits file descriptors from the host",
    "cdiDevices": "passes host devices into the container",
    "device_host_src": "passes host devices into the container",
    "mountAllDevices": "mounts every host device",
    "sdnotifySocket": "talks to a host systemd socket",
    "secret_env": "reads Podman secrets of this host",
    "HostUsers": "maps host users into the container",
    "addCurrentUserPasswdEntry": "adds a host user to the container",
    "exitCommand": "runs a command on this host when the container exits",
}


def refuse(what: str, fix: str = "") -> UnsafeArchiveError:
    return jsonfields.refuse(what, fix)


def named_volumes(value: Any) -> list[dict[str, Any]]:
    """The archive's named volumes, checked: name, destination and plain mount options only."""
    config = Fields(value, WHERE)
    out = []
    names: set[str] = set()
    for i, raw in enumerate(config.seq("namedVolumes")):
        v = Fields(raw, f"{WHERE} namedVolumes[{i}]")
        name = v.text("volumeName", limit=253)
        if not _NAME.match(name):
            raise refuse(f"{v.where} names the volume {name!r}, which is not a valid volume name")
        if name in names:
            raise refuse(f"{WHERE} lists the volume {name!r} twice")
        names.add(name)
        dest = abs_path(v.raw("dest"), f"{v.where} dest")
        options = v.strs("options")
        for option in options:
            if option.startswith("volume-opt") or option.startswith("o=") or "=" in option:
                raise refuse(
                    f"{v.where} creates the volume {name!r} with the driver option {option!r}; volume driver "
                    "options can bind host directories into the container",
                    "Create the volume on this host first if it needs driver options.",
                )
            if option not in _VOLUME_OPTIONS:
                raise refuse(f"{v.where} has the volume option {option!r}")
        entry: dict[str, Any] = {"volumeName": name, "dest": dest}
        if options:
            entry["options"] = options
        if v.flag("setAnonymous"):
            entry["setAnonymous"] = True
        _no_unknown_keys(v, {"volumeName", "dest", "options", "setAnonymous"})
        out.append(entry)
    return out


def rebuild_config(value: Any, spec: dict[str, Any], ctx: RebuildContext) -> dict[str, Any]:
    """config.dump for Podman: checked archive fields, this host's settings, the rebuilt spec."""
    config = Fields(value, WHERE)
    policy = ctx.policy
    out: dict[str, Any] = {"spec": spec}
    for key in ("id", "rootfsImageID"):
        ident = config.text(key, limit=64)
        if not _ID.match(ident):
            raise refuse(f"{WHERE} {key} {ident!r} is not a 64-character hexadecimal id")
        out[key] = ident
    name = config.text("name", limit=253)
    if not _NAME.match(name):
        raise refuse(f"{WHERE} name {name!r} is not a valid container name")
    out["name"] = name
    for key, limit in _STRINGS.items():
        if config.has(key):
            text = config.text(key, limit=limit)
            if "\n" in text and key == "passwd_entry":
                raise refuse(f"{WHERE} passwd_entry spans lines")
            out[key] = text
    for key, allowed in _ENUMS.items():
        if config.has(key):
            text = config.text(key, limit=64)
            if text not in allowed and not (key == "networkMode" and text == "host" and policy.host_namespaces):
                raise refuse(f"{WHERE} {key} {text!r} is not one ferry restores")
            out[key] = text
    for key in _BOOLS:
        if config.has(key):
            out[key] = config.flag(key)
    for key, (low, high) in _INTS.items():
        if config.has(key):
            out[key] = config.num(key, low=low, high=high)
    for key in _STRING_LISTS:
        if config.has(key):
            out[key] = config.strs(key)
    if config.has("labels"):
        out["labels"] = config.str_map("labels")
    if config.has("timezone"):
        tz = config.text("timezone", limit=256)
        if tz and not _TZ.match(tz):
            raise refuse(f"{WHERE} timezone {tz!r} is not a time zone name")
        out["timezone"] = tz
    if config.has("umask"):
        umask = config.text("umask", limit=8)
        if not re.match(r"^0?[0-7]{1,4}$", umask):
            raise refuse(f"{WHERE} umask {umask!r} is not an octal mask")
        out["umask"] = umask
    if config.has("dnsServer"):
        out["dnsServer"] = [ip_address(x, f"{WHERE} dnsServer") for x in config.strs("dnsServer")]
    if config.has("staticIP"):
        out["staticIP"] = ip_address(config.text("staticIP", limit=64), f"{WHERE} staticIP")
    if config.has("staticMAC"):
        out["staticMAC"] = mac_address(config.raw("staticMAC"), f"{WHERE} staticMAC")
    if config.has("exposedPorts"):
        out["exposedPorts"] = exposed_ports(config.raw("exposedPorts"))
    if config.has("newPortMappings"):
        out["newPortMappings"] = [port_mapping(p, i) for i, p in enumerate(config.seq("newPortMappings"))]
    if config.has("newNetworks"):
        out["newNetworks"] = networks(config.raw("newNetworks"))
    if config.has("healthcheck") and config.raw("healthcheck") is not None:
        out["healthcheck"] = _healthcheck(config.raw("healthcheck"))
    volumes = named_volumes(value)
    config.raw("namedVolumes")
    if volumes:
        out["namedVolumes"] = volumes
    shares_host_net = not config.flag("createNetNS", default=True) and config.text("networkMode", limit=64) in (
        "",
        "host",
        "bridge",
        "private",
    )
    if shares_host_net and not (policy.host_namespaces or policy.privileged):
        raise refuse(f"{WHERE} shares this host's network namespace with the container", POLICY_FIX)
    if config.flag("privileged") and not policy.privileged:
        raise refuse(f"{WHERE} runs the container --privileged", POLICY_FIX)
    if config.has("privileged"):
        out["privileged"] = config.flag("privileged")
    if config.has("systemd") and config.raw("systemd") is not None:
        if config.flag("systemd") and not policy.privileged:
            raise refuse(f"{WHERE} runs the container in systemd mode (a writable cgroup tree)", POLICY_FIX)
        out["systemd"] = config.flag("systemd")
    secrets = config.seq("secrets")
    if secrets and not policy.secrets:
        raise refuse(
            f"{WHERE} mounts {len(secrets)} Podman secret(s), looked up by name on this host",
            "Recreate the container's secrets on this host and allow 'secrets' in the restore policy.",
        )
    if secrets:
        out["secrets"] = [_secret(s, i) for i, s in enumerate(secrets)]
    _check_id_mappings(config.obj("idMappingsOptions"))
    _check_labelopts(config.strs("labelopts"), ctx)
    for key, why in _REFUSED.items():
        if not empty(config.raw(key)):
            raise refuse(f"{WHERE} {key}: the container {why}")
    runtime = config.text("runtime", limit=64)
    if runtime and not re.match(r"^[A-Za-z0-9_.-]+$", runtime):
        raise refuse(f"{WHERE} runtime {runtime!r} is not a runtime name (a path would run another binary)")
    if runtime:
        out["runtime"] = runtime
    if ctx.host is not None:
        out["cgroupManager"] = ctx.host.cgroup_manager
        if ctx.host.runtime:
            out["runtime"] = ctx.host.runtime
    for key in _DROPPED:
        config.raw(key)
    _no_unknown(config)
    return out


def _no_unknown(config: Fields) -> None:
    for key in config.unread():
        if not empty(config.raw(key)):
            raise refuse(f"{WHERE} has the field {key!r}, which ferry does not restore")


def _check_id_mappings(m: Fields) -> None:
    host_uid = m.flag("HostUIDMapping", default=True)
    host_gid = m.flag("HostGIDMapping", default=True)
    if not (host_uid and host_gid) or m.flag("AutoUserNs") or not empty(m.raw("UIDMap")) or not empty(m.raw("GIDMap")):
        raise refuse(f"{WHERE} idMappingsOptions: the container runs in a user namespace, which does not travel")
    m.raw("AutoUserNsOpts")


def _check_labelopts(opts: list[str], ctx: RebuildContext) -> None:
    for opt in opts:
        if opt != "disable":
            raise refuse(f"{WHERE} labelopts holds {opt!r}; SELinux labels are this host's")


def _healthcheck(value: Any) -> dict[str, Any]:
    h = Fields(value, f"{WHERE} healthcheck")
    out: dict[str, Any] = {"Test": h.strs("Test")}
    for key in ("StartPeriod", "Interval", "Timeout", "Retries"):
        if h.has(key):
            out[key] = h.num(key, low=0)
    _no_unknown_keys(h, {"Test", "StartPeriod", "Interval", "Timeout", "Retries"})
    return out


def _secret(raw: Any, i: int) -> dict[str, Any]:
    s = Fields(raw, f"{WHERE} secrets[{i}]")
    name = s.text("Name", limit=253)
    if not _NAME.match(name):
        raise refuse(f"{s.where} names {name!r}, not a secret name")
    target = s.text("Target", limit=4096)
    if target and (target.startswith("/") or ".." in target.split("/")):
        target = abs_path(target, f"{s.where} Target")
    out = {
        "Name": name,
        "Target": target,
        "UID": s.num("UID", low=0, high=2**32 - 1),
        "GID": s.num("GID", low=0, high=2**32 - 1),
        "Mode": s.num("Mode", low=0, high=0o777),
    }
    s.raw("ID")
    _no_unknown_keys(s, {"Name", "ID", "Target", "UID", "GID", "Mode"})
    return out


def _no_unknown_keys(fields: Fields, known: set[str]) -> None:
    no_unknown(fields, known)


def rebuild_descriptors(value: Any) -> list[str]:
    """checkpoint/descriptors.json: what the container's stdio fds were (runc maps pipes back)."""
    where = "checkpoint/descriptors.json"
    if not isinstance(value, list) or len(value) > 64:
        raise refuse(f"{where} must be a list of at most 64 descriptors")
    out = []
    for item in value:
        text = string(item, where, limit=4096)
        if not (re.match(r"^(pipe|socket|anon_inode):\[?[A-Za-z0-9_:-]*\]?$", text) or text.startswith("/")):
            raise refuse(f"{where} holds {text!r}, which is not a descriptor path")
        out.append(text)
    return out

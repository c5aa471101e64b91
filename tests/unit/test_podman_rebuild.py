"""config.dump and spec.dump are rebuilt from a real Podman 4.3.1 export: what travels, what is
this host's, and every privileged or host-bound field refused with a message naming it."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from ferry.archive import members as m
from ferry.archive.rebuild import rebuild
from ferry.archive.rebuild_context import HostFacts, RebuildContext
from ferry.errors import UnsafeArchiveError
from ferry.restore_policy import RestorePolicy
from tests.archive_forge import REAL_DUMPS

HOST = HostFacts(
    volume_path="/srv/podman/volumes",
    cgroup_manager="cgroupfs",
    runtime="runc",
    reference={
        "process": {
            "capabilities": {
                "bounding": [
                    "CAP_CHOWN",
                    "CAP_KILL",
                    "CAP_SETUID",
                    "CAP_SETGID",
                    "CAP_NET_BIND_SERVICE",
                    "CAP_DAC_OVERRIDE",
                    "CAP_FOWNER",
                    "CAP_FSETID",
                    "CAP_SETFCAP",
                    "CAP_SETPCAP",
                    "CAP_SYS_CHROOT",
                ]
            },
            "apparmorProfile": "containers-default-0.50.1",
        },
        "linux": {
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
            },
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        },
    },
)


def dumps() -> tuple[dict[str, Any], dict[str, Any]]:
    config = json.loads((REAL_DUMPS / "config.dump").read_text())
    spec = json.loads((REAL_DUMPS / "spec.dump").read_text())
    return config, spec


def run(
    config: dict[str, Any] | bytes,
    spec: dict[str, Any] | bytes,
    *,
    host: HostFacts | None = HOST,
    policy: RestorePolicy | None = None,
    volumes: frozenset[str] = frozenset({"vol1"}),
    criu_config: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = {
        m.CONFIG_DUMP: config if isinstance(config, bytes) else json.dumps(config).encode(),
        m.SPEC_DUMP: spec if isinstance(spec, bytes) else json.dumps(spec).encode(),
        m.NETWORK_STATUS: (REAL_DUMPS / "network.status").read_bytes(),
        m.DESCRIPTORS: (REAL_DUMPS / "descriptors.json").read_bytes(),
    }
    ctx = RebuildContext(policy=policy or RestorePolicy(), host=host, criu_config=criu_config)
    out = rebuild(raw, ctx, volumes)
    return json.loads(out.members[m.CONFIG_DUMP]), json.loads(out.members[m.SPEC_DUMP])


def test_an_honest_export_is_rebuilt_for_this_host() -> None:
    config, spec = run(*dumps())
    assert config["name"] == "c1" and config["rootfsImageID"].startswith("09cb89c4")
    for host_path in (
        "conmonPidFile",
        "pid_file",
        "ShmDir",
        "staticDir",
        "mounts",
        "secretsPath",
        "logPath",
        "cgroupParent",
        "CreateCommand",
        "lockID",
    ):
        assert host_path not in config, host_path
    assert config["runtime"] == "runc" and config["cgroupManager"] == "cgroupfs"
    assert config["spec"] == spec
    by_dest = {mount["destination"]: mount for mount in spec["mounts"]}
    assert by_dest["/vol"]["source"] == "/srv/podman/volumes/vol1/_data"
    for managed in ("/dev/shm", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv"):
        assert managed not in by_dest, f"{managed} is Podman's to add on this host"
    assert {"type": "network"} in spec["linux"]["namespaces"]  # the source's netns path is gone
    assert "cgroupsPath" not in spec["linux"]
    assert spec["linux"]["seccomp"] == HOST.reference["linux"]["seccomp"]
    assert spec["process"]["apparmorProfile"] == "containers-default-0.50.1"
    assert "/proc/kcore" in spec["linux"]["maskedPaths"] and "/proc/acpi" in spec["linux"]["maskedPaths"]
    assert spec["process"]["args"] == ["sh", "-c", "echo hi > /vol/x; while :; do sleep 1; done"]


def test_verify_without_a_host_refuses_the_same_and_keeps_sources() -> None:
    config, spec = run(*dumps(), host=None)
    assert "runtime" in config
    assert {mount["destination"] for mount in spec["mounts"]} >= {"/vol", "/proc"}


def test_ferry_names_its_own_criu_configuration() -> None:
    _, spec = run(*dumps(), criu_config="/var/tmp/ferry/run/criu.conf")
    assert spec["annotations"]["org.criu.config"] == "/var/tmp/ferry/run/criu.conf"


Edit = Callable[[dict[str, Any], dict[str, Any]], None]


def _set(path: str, value: Any) -> Edit:
    """An edit of config ('c.') or spec ('s.') at a dotted path; list indexes as numbers."""

    def edit(config: dict[str, Any], spec: dict[str, Any]) -> None:
        target: Any = config if path.startswith("c.") else spec
        keys = path[2:].split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        if isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value

    return edit


def _mount(extra: dict[str, Any]) -> Edit:
    def edit(config: dict[str, Any], spec: dict[str, Any]) -> None:
        spec["mounts"].append(extra)

    return edit


def _drop_ns(kind: str) -> Edit:
    def edit(config: dict[str, Any], spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]

    return edit


def _add_cap(cap: str) -> Edit:
    def edit(config: dict[str, Any], spec: dict[str, Any]) -> None:
        for key in ("bounding", "effective", "permitted"):
            spec["process"]["capabilities"][key].append(cap)

    return edit


HOSTILE: dict[str, tuple[Edit, str]] = {
    "hook-prestart": (_set("s.hooks", {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "id"]}]}), "hooks"),
    "hook-createRuntime": (_set("s.hooks", {"createRuntime": [{"path": "/bin/sh"}]}), "hooks"),
    "bind-host-etc": (
        _mount({"destination": "/host", "type": "bind", "source": "/etc", "options": ["rbind", "rw"]}),
        "bind-mounts the host path '/etc'",
    ),
    "second-dev-shm": (
        _mount({"destination": "/dev/shm", "type": "bind", "source": "/etc", "options": ["rbind"]}),
        "mounts /dev/shm twice",
    ),
    "second-etc-hosts": (
        _mount({"destination": "/etc/hosts", "type": "bind", "source": "/etc/shadow", "options": ["bind"]}),
        "mounts /etc/hosts twice",
    ),
    "overlay-mount": (_mount({"destination": "/x", "type": "overlay", "source": "overlay"}), "'overlay' file system"),
    "sysfs-writable": (_set("s.mounts.2.options", ["nosuid"]), "sysfs writable"),
    "rootfs-host": (_set("c.rootfs", "/"), "rootfs"),
    "volume-opt-bind": (
        _set("c.namedVolumes", [{"volumeName": "vol1", "dest": "/vol", "options": ["volume-opt=o=bind"]}]),
        "driver option",
    ),
    "secrets": (_set("c.secrets", [{"Name": "db", "ID": "x", "Target": "db"}]), "secret"),
    "timezone-traversal": (_set("c.timezone", "../../../etc/shadow"), "time zone"),
    "privileged-config": (_set("c.privileged", True), "--privileged"),
    "privileged-annotation": (
        lambda c, s: s["annotations"].update({"io.podman.annotations.privileged": "TRUE"}),
        "marks the container privileged",
    ),
    "criu-config-annotation": (_set("s.annotations", {"org.criu.config": "/tmp/evil.conf"}), "CRIU configuration"),
    "cap-sys-admin": (_add_cap("CAP_SYS_ADMIN"), "CAP_SYS_ADMIN"),
    "host-pid-namespace": (_drop_ns("pid"), "pid namespace"),
    "join-host-netns-path": (_set("s.linux.namespaces.0", {"type": "pid", "path": "/proc/1/ns/pid"}), "joins"),
    "user-namespace": (_set("s.linux.namespaces.4", {"type": "user"}), "user namespace"),
    "devices": (_set("s.linux.devices", [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]), "device"),
    "device-rules-allow-all": (_set("s.linux.resources.devices", [{"allow": True, "access": "rwm"}]), None),
    "seccomp-off": (_set("s.linux.seccomp", None), "seccomp"),
    "seccomp-allow-all": (_set("s.linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW"}), "allows every"),
    "apparmor-unconfined": (_set("s.process.apparmorProfile", "unconfined"), "AppArmor"),
    "runtime-path": (_set("c.runtime", "/tmp/evil-runtime"), "runtime name"),
    "sysctl-host": (_set("s.linux.sysctl", {"kernel.core_pattern": "|/tmp/x"}), "not namespaced"),
    "uid-mappings": (_set("s.linux.uidMappings", [{"containerID": 0, "hostID": 0, "size": 1}]), "user namespaces"),
    "exit-command": (_set("c.exitCommand", ["/bin/sh", "-c", "id"]), "exitCommand"),
    "net-ns-of-other-container": (_set("c.netNsCtr", "a" * 64), "netNsCtr"),
    "dependencies": (_set("c.Dependencies", ["a" * 64]), "Dependencies"),
    "oom-immune": (_set("s.process.oomScoreAdj", -1000), "OOM"),
    "propagation-shared": (_set("s.linux.rootfsPropagation", "rshared"), "share mounts"),
    "unknown-config-field": (_set("c.hooksDir", ["/tmp/hooks"]), "hooksDir"),
    "unknown-process-field": (_set("s.process.scheduler", {"policy": "SCHED_FIFO"}), "scheduler"),
    "id-mappings": (_set("c.idMappingsOptions", {"HostUIDMapping": False, "UIDMap": [{"a": 1}]}), "user namespace"),
    "pod": (_set("c.pod", "b" * 64), "pod"),
    "device-host-src": (_set("c.device_host_src", [{"Path": "/dev/sda"}]), "host devices"),
    "sdnotify-socket": (_set("c.sdnotifySocket", "/run/systemd/notify"), "systemd socket"),
    "bad-name": (_set("c.name", "../x"), "container name"),
    "bad-image-id": (_set("c.rootfsImageID", "x" * 64), "hexadecimal"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_privileged_or_host_bound_fields_are_refused(case: str) -> None:
    edit, match = HOSTILE[case]
    config, spec = dumps()
    edit(config, spec)
    if match is None:  # not refused: replaced by this host's rules
        _, out = run(config, spec)
        assert out["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
        return
    with pytest.raises(UnsafeArchiveError, match=re.escape(match) if " " not in match else match) as raised:
        run(config, spec)
    assert "refusing the archive" in str(raised.value)


def test_the_same_refusals_without_a_host() -> None:
    for case in ("hook-prestart", "bind-host-etc", "cap-sys-admin", "rootfs-host", "criu-config-annotation"):
        edit, _ = HOSTILE[case]
        config, spec = dumps()
        edit(config, spec)
        with pytest.raises(UnsafeArchiveError):
            run(config, spec, host=None)


def test_a_restore_policy_lets_named_privileges_through() -> None:
    config, spec = dumps()
    _add_cap("CAP_NET_ADMIN")(config, spec)
    _mount({"destination": "/shared", "type": "bind", "source": "/srv/shared/a", "options": ["rbind"]})(config, spec)
    with pytest.raises(UnsafeArchiveError, match="CAP_NET_ADMIN"):
        run(copy.deepcopy(config), copy.deepcopy(spec))
    policy = RestorePolicy(capabilities=frozenset({"CAP_NET_ADMIN"}), bind_mounts=("/srv/shared",))
    _, out = run(config, spec, policy=policy)
    assert "CAP_NET_ADMIN" in out["process"]["capabilities"]["effective"]
    assert {"destination": "/shared", "type": "bind", "source": "/srv/shared/a", "options": ["rbind"]} in out["mounts"]
    # ... and a sibling directory is still refused
    _mount({"destination": "/other", "type": "bind", "source": "/srv/sharedX", "options": ["rbind"]})(config, spec)
    with pytest.raises(UnsafeArchiveError, match="/srv/sharedX"):
        run(config, spec, policy=policy)


def test_keys_go_reads_without_regard_to_case_are_refused_when_doubled() -> None:
    config, spec = dumps()
    text = json.dumps(config)[:-1] + ', "ROOTFSIMAGEID": "' + "e" * 64 + '"}'
    with pytest.raises(UnsafeArchiveError, match="twice"):
        run(text.encode(), spec)
    nested = json.dumps(spec).replace('"process": {', '"process": {"ARGS": ["evil"], ', 1)
    with pytest.raises(UnsafeArchiveError, match="twice"):
        run(config, nested.encode())


def test_a_lone_key_in_another_spelling_is_read_as_go_reads_it() -> None:
    config, spec = dumps()
    config["ROOTFSIMAGEID"] = config.pop("rootfsImageID")
    del config["privileged"]
    config["Privileged"] = True
    with pytest.raises(UnsafeArchiveError, match="--privileged"):
        run(config, spec)
    del config["Privileged"]
    out, _ = run(config, spec)
    assert out["rootfsImageID"].startswith("09cb89c4")


@pytest.mark.parametrize("member", [m.CONFIG_DUMP, m.SPEC_DUMP])
def test_deep_json_is_refused_before_parsing(member: str) -> None:
    config, spec = dumps()
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    args = (deep, spec) if member == m.CONFIG_DUMP else (config, deep)
    with pytest.raises(UnsafeArchiveError, match="levels deep"):
        run(*args)


def test_nan_and_oversized_json_are_refused() -> None:
    config, spec = dumps()
    with pytest.raises(UnsafeArchiveError, match="NaN"):
        run(json.dumps(config).replace('"shmSize": 65536000', '"shmSize": NaN').encode(), spec)
    with pytest.raises(UnsafeArchiveError, match="at most"):
        run(b" " * (5 << 20) + json.dumps(config).encode(), spec)


def test_volume_contents_must_belong_to_a_named_volume() -> None:
    with pytest.raises(UnsafeArchiveError, match="other"):
        run(*dumps(), volumes=frozenset({"vol1", "other"}))

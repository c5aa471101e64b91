"""spec.dump: runc acts on it as root: hooks, mounts, capabilities, seccomp, AppArmor, namespaces, masked
paths, devices.

Part of issue 10's acceptance suite (see tests/e2e/attacks/__init__.py): each test is an archive an
attacker with write access to the bucket could write, restored as root on the real restore path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.attack_lab import Attempt, Lab
from tests.e2e.attacks.exploits import (
    CONFIG,
    SPEC,
    cap_names,
    clone,
    exec_privileges,
    exec_writes,
    harm_if,
    shell_hook,
)

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]


# ---------------------------------------------------------------------------------------------
# spec.dump: runc acts on it as root


@pytest.mark.parametrize(
    "hook", ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
)
def test_spec_hook_runs_a_host_command(lab: Lab, atk: Attempt, hook: str) -> None:
    u = clone(lab)
    spec = u.json(SPEC)
    spec.setdefault("hooks", {})[hook] = [shell_hook(atk)]
    u.set_json(SPEC, spec)
    atk.refused(u, r"hook")


def test_spec_hooks_in_a_second_spelling_that_python_does_not_see(lab: Lab, atk: Attempt) -> None:
    """Go's encoding/json matches keys case-insensitively and merges a second object into the
    first: ``"Hooks": {prestart}`` then ``"hooks": {}`` gives runc the prestart hook, while a
    Python reader of ``spec["hooks"]`` sees an empty object."""
    u = clone(lab)
    spec = u.json(SPEC)
    text = (
        json.dumps(spec)[:-1] + ", " + json.dumps({"Hooks": {"Prestart": [shell_hook(atk)]}})[1:-1] + ', "hooks": {}}'
    )
    u.set(SPEC, text.encode())
    atk.refused(u, r"hook|duplicate|spelling|twice")


def test_spec_extra_bind_mount_of_a_host_directory(lab: Lab, atk: Attempt) -> None:
    u = clone(lab)
    spec = u.json(SPEC)
    spec["mounts"].append(
        {"destination": "/hostdir", "type": "bind", "source": str(atk.dir), "options": ["rbind", "rw"]}
    )
    u.set_json(SPEC, spec)
    atk.refused(u, r"mount", exploit=exec_writes("/hostdir/pwned"))


@pytest.mark.parametrize("destination", ["/dev/shm", "/etc/hosts"])
def test_spec_second_mount_on_a_destination_podman_replaces(lab: Lab, atk: Attempt, destination: str) -> None:
    """Podman's RemoveMount drops only the first mount of /dev/shm, /etc/hosts, ...: a second one
    with a host source stays in the spec runc mounts."""
    u = clone(lab)
    spec = u.json(SPEC)
    source = atk.dir if destination == "/dev/shm" else atk.dir / "victim"
    spec["mounts"].append(
        {"destination": destination, "type": "bind", "source": str(source), "options": ["rbind", "rw"]}
    )
    u.set_json(SPEC, spec)
    target = "/dev/shm/pwned" if destination == "/dev/shm" else "/etc/hosts"
    atk.refused(u, r"mount|" + destination, exploit=exec_writes(target))


def test_spec_org_criu_config_names_a_criu_config_the_attacker_wrote(lab: Lab, atk: Attempt) -> None:
    """runc hands CRIU the config file named by the ``org.criu.config`` annotation; an
    action-script in it runs as root during the restore. The file sits in a directory an
    unprivileged local user can write (here: the attempt's ``attacker`` directory)."""
    attacker = atk.dir.parent / "attacker"
    script = attacker / "action.sh"
    script.write_text(f"#!/bin/sh\necho pwned by a CRIU action-script $CRTOOLS_SCRIPT_ACTION >> {atk.marker}\n")
    script.chmod(0o755)
    conf = attacker / "criu.conf"
    conf.write_text(f"action-script {script}\n")
    u = clone(lab)
    spec = u.json(SPEC)
    spec["annotations"]["org.criu.config"] = str(conf)
    u.set_json(SPEC, spec)
    atk.refused(u, r"org\.criu\.config|annotation", watch=[attacker])


def test_spec_grants_every_capability(lab: Lab, atk: Attempt) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    names = [n for n in cap_names() if cap_names()[n] <= last]
    u = clone(lab)
    spec = u.json(SPEC)
    spec["process"]["capabilities"] = dict.fromkeys(("bounding", "effective", "permitted", "inheritable"), names)
    u.set_json(SPEC, spec)
    atk.refused(u, r"capabilit", exploit=exec_privileges)


def test_spec_drops_seccomp(lab: Lab, atk: Attempt) -> None:
    u = clone(lab)
    spec = u.json(SPEC)
    del spec["linux"]["seccomp"]
    u.set_json(SPEC, spec)
    atk.refused(u, r"seccomp", exploit=exec_privileges)


def test_spec_apparmor_unconfined(lab: Lab, atk: Attempt) -> None:
    """Refused on a host with AppArmor; on one without (this sandbox) there is nothing to
    disable, so a restore that drops the profile is acceptable."""
    u = clone(lab)
    spec = u.json(SPEC)
    spec["process"]["apparmorProfile"] = "unconfined"
    u.set_json(SPEC, spec)
    atk.refused(u, r"apparmor", or_neutralised=not Path("/sys/module/apparmor").exists())


@pytest.mark.parametrize("kind", ["network", "ipc", "uts"])
def test_spec_host_namespace(lab: Lab, atk: Attempt, kind: str) -> None:
    """The container joins one of the host's namespaces: by path for the network (with
    config.dump saying Podman should not make one), by omission for the others."""
    u = clone(lab)
    spec = u.json(SPEC)
    spaces = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]
    if kind == "network":
        spaces.append({"type": "network", "path": f"/proc/{os.getpid()}/ns/net"})
        config = u.json(CONFIG)
        config.update(createNetNS=False, networkMode="host")
        config.pop("newNetworks", None)
        u.set_json(CONFIG, config)
    spec["linux"]["namespaces"] = spaces
    u.set_json(SPEC, spec)
    short = {"network": "net"}.get(kind, kind)

    def exploit(a: Attempt) -> list[str]:
        pid = a.pid()
        if not pid:
            return []
        same = os.readlink(f"/proc/{pid}/ns/{short}") == os.readlink(f"/proc/self/ns/{short}")
        return harm_if(same, f"the restored container shares the host's (this test's) {kind} namespace")

    atk.refused(u, r"namespace|" + kind, exploit=exploit)


def test_spec_unmasks_and_unprotects_proc(lab: Lab, atk: Attempt) -> None:
    """No masked or read-only paths: /proc/kcore, /proc/sysrq-trigger, /proc/sys as Podman
    would never hand them to a container."""
    u = clone(lab)
    spec = u.json(SPEC)
    spec["linux"]["maskedPaths"] = []
    spec["linux"]["readonlyPaths"] = []
    u.set_json(SPEC, spec)

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("cat", "/proc/self/mountinfo")
        points = {line.split()[4] for line in proc.stdout.splitlines() if len(line.split()) > 4}
        shielded = points & {"/proc/kcore", "/proc/sysrq-trigger", "/proc/sys"}
        return harm_if(proc.returncode == 0 and not shielded, "exec'd processes see /proc/kcore and /proc/sys unmasked")

    atk.refused(u, r"masked|readonly|read-only", exploit=exploit, or_neutralised=True)


def test_spec_passes_a_host_device(lab: Lab, atk: Attempt) -> None:
    u = clone(lab)
    spec = u.json(SPEC)
    spec["linux"].setdefault("devices", []).append(
        {"path": "/dev/hostkmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666, "uid": 0, "gid": 0}
    )
    spec["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwm"})
    u.set_json(SPEC, spec)

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("sh", "-c", "head -c 64 /dev/hostkmsg")
        return harm_if(proc.returncode == 0 and bool(proc.stdout), "the container read the host's /dev/kmsg")

    atk.refused(u, r"device", exploit=exploit)

"""config.dump: Podman acts on it as root: host paths, cgroups, volumes, secrets, runtime, privileges, JSON spellings.

Part of issue 10's acceptance suite (see tests/e2e/attacks/__init__.py): each test is an archive an
attacker with write access to the bucket could write, restored as root on the real restore path.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.archive_forge import (
    Entry,
    Unpacked,
)
from tests.attack_lab import Attempt, Lab
from tests.e2e.attacks.exploits import (
    CONFIG,
    LINK_IMAGE,
    SECRET,
    SECRET_TEXT,
    SPEC,
    clone,
    exec_privileges,
    exec_writes,
    harm_if,
)

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]


# ---------------------------------------------------------------------------------------------
# config.dump: Podman honours host paths and options in it


def _config_edit(lab: Lab, **values: object) -> Unpacked:
    u = clone(lab)
    config = u.json(CONFIG)
    config.update(values)
    u.set_json(CONFIG, config)
    return u


def test_config_conmon_pid_file_overwrites_a_host_file(lab: Lab, atk: Attempt) -> None:
    atk.refused(
        _config_edit(lab, conmonPidFile=str(atk.dir / "victim")), r"conmonPidFile|pid ?file", or_neutralised=True
    )


def test_config_pid_file_overwrites_a_host_file(lab: Lab, atk: Attempt) -> None:
    atk.refused(_config_edit(lab, pid_file=str(atk.dir / "victim")), r"pid_file|pid ?file", or_neutralised=True)


def test_config_mounts_unmounts_a_host_mount(lab: Lab, atk: Attempt) -> None:
    """Podman unmounts every path in config.dump's ``mounts`` when the container is cleaned up."""
    mnt = atk.dir.parent / "hostmount"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ferry-attack", str(mnt)], check=True)
    (mnt / "data").write_bytes(b"a host tmpfs that must stay mounted\n")
    config = clone(lab).json(CONFIG)
    u = _config_edit(lab, mounts=[*config.get("mounts", []), str(mnt)])
    atk.refused(u, r"mounts", watch=[mnt], or_neutralised=True)


def test_config_shm_dir_is_a_host_directory(lab: Lab, atk: Attempt) -> None:
    atk.refused(_config_edit(lab, ShmDir=str(atk.dir)), r"ShmDir|shm", or_neutralised=True)


def test_config_cgroup_parent_makes_a_host_cgroup(lab: Lab, atk: Attempt) -> None:
    """cgroupfs: Podman and runc create the parent in every controller of the host's hierarchy
    (v1 here: /sys/fs/cgroup/<controller>/<parent>, and nothing removes it afterwards)."""
    parent = f"ferry-attack-{os.getpid()}"
    made = [Path("/sys/fs/cgroup") / c.name / parent for c in Path("/sys/fs/cgroup").iterdir() if c.is_dir()]
    made.append(Path("/sys/fs/cgroup") / parent)
    try:
        atk.refused(
            _config_edit(lab, cgroupParent="/" + parent), r"cgroupParent|cgroup", absent=made, or_neutralised=True
        )
    finally:
        for top in made:
            if top.is_dir():
                for leaf in sorted((p for p in top.glob("**/") if p.is_dir()), key=lambda p: -len(p.parts)):
                    leaf.rmdir()


def test_config_rootfs_is_a_host_directory(lab: Lab, atk: Attempt) -> None:
    atk.refused(_config_edit(lab, rootfs=str(atk.dir)), r"rootfs", exploit=exec_writes("/pwned"))


def test_config_named_volume_binds_a_host_directory(lab: Lab, atk: Attempt) -> None:
    """``volume-opt`` options make Podman create the volume as a bind of a host directory, into
    which it then untars volumes/<name>.tar."""
    u = clone(lab)
    config = u.json(CONFIG)
    for vol in config["namedVolumes"]:
        vol["options"] += ["volume-opt=type=none", "volume-opt=o=bind", f"volume-opt=device={atk.dir}"]
    u.set_json(CONFIG, config)
    atk.refused(u, r"volume", exploit=exec_writes("/vol/pwned"))


def test_config_secrets_hand_over_a_host_secret(lab: Lab, atk: Attempt) -> None:
    u = _config_edit(lab, secrets=[{"name": SECRET, "id": "", "driver": "file", "UID": 0, "GID": 0, "Mode": 0o444}])

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("cat", f"/run/secrets/{SECRET}")
        return harm_if(SECRET_TEXT.decode() in proc.stdout, "the container read the host's Podman secret")

    atk.refused(u, r"secret", exploit=exploit)


def test_config_timezone_climbs_out_of_zoneinfo(lab: Lab, atk: Attempt) -> None:
    secret = atk.dir / "sub" / "deeper" / "data.bin"
    u = _config_edit(lab, timezone="../../.." + str(secret))

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("cat", "/etc/localtime")
        return harm_if(
            proc.stdout.encode(errors="surrogateescape")[:64] == secret.read_bytes()[:64], "host file copied in"
        )

    atk.refused(u, r"timezone", exploit=exploit)


def test_config_oci_runtime_is_a_host_program(lab: Lab, atk: Attempt) -> None:
    program = atk.dir.parent / "attacker" / "runtime"
    program.write_text(f'#!/bin/sh\necho pwned by a runtime >> {atk.marker}\nexec runc "$@"\n')
    program.chmod(0o755)
    atk.refused(_config_edit(lab, runtime=str(program)), r"runtime")


def test_config_privileged(lab: Lab, atk: Attempt) -> None:
    u = _config_edit(lab, privileged=True)
    spec = u.json(SPEC)
    spec["annotations"]["io.podman.annotations.privileged"] = "TRUE"
    u.set_json(SPEC, spec)
    atk.refused(u, r"privileged", exploit=exec_privileges)


# ---------------------------------------------------------------------------------------------
# JSON as Go reads it: keys match case-insensitively, the last duplicate wins


def test_config_second_spelling_of_the_image_id_selects_another_image(lab: Lab, atk: Attempt) -> None:
    """ferry reads ``rootfsImageID``; Podman also takes ``ROOTFSIMAGEID`` (the last wins) and
    restores on the image holding ``/data/link -> /``, through which the diff then writes."""
    link_id = lab.target.podman("image", "inspect", "--format", "{{.Id}}", LINK_IMAGE).stdout.strip()
    u = clone(lab)
    text = (u.find(CONFIG).data or b"").decode()
    text = text.rstrip()[:-1] + f', "ROOTFSIMAGEID": "{link_id}", "ROOTFSIMAGENAME": "{LINK_IMAGE}"}}'
    u.set(CONFIG, text.encode())
    u.add_to_diff([Entry(f"data/link{atk.dir}/pwned", b"written through the image's symlink\n")])
    atk.refused(u, r"ROOTFSIMAGEID|rootfsImageID|spelling|duplicate|case")


def test_config_duplicate_key(lab: Lab, atk: Attempt) -> None:
    """The same key twice: whichever a reader keeps, the archive is ambiguous and refused."""
    u = clone(lab)
    text = (u.find(CONFIG).data or b"").decode().rstrip()
    text = text[:-1] + f', "conmonPidFile": {json.dumps(str(atk.dir / "victim"))}}}'
    u.set(CONFIG, text.encode())
    atk.refused(u, r"duplicate|twice|conmonPidFile")

"""Issue 10's acceptance suite: attacks on the real restore path (Podman 4.3.1, runc, CRIU).

Each test is an archive an attacker with write access to the bucket could write: a real ferry
snapshot of the busybox workload with one thing changed, re-sealed with a consistent manifest and
sidecar, restored as root with ``ferry restore --name X --allow-unsigned`` (tests/attack_lab.py,
``restore_hostile``). Each aims at a real target on this host (a file, a directory, a mount, a
cgroup, a secret) and must be refused by name, leaving the target, the sentinel tree and the
store exactly as they were, with no process left running. The last tests are honest use that
must keep working.

The lab is built once per module: a source store that snapshots the workload (with a named
volume, /dev/shm content and a rootfs diff) and a target store, the victim host, with the same
image, an image holding ``/data/link -> /`` and a Podman secret.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.archive.compression import SUFFIX
from flows.snapshot import snapshot
from tests import criu_image_forge as criu
from tests.archive_forge import (
    DIFF,
    MANIFEST,
    Entry,
    Member,
    Sealed,
    Unpacked,
    deep_json,
    make_sentinel,
    pack,
    pack_tar,
    sha256,
    tree_state,
)
from tests.attack_lab import Attempt, Exploit, Lab, VfsHost, describe, mounts_below, restore_hostile
from tests.helpers import IMAGE, ULIMITS, WORKLOAD, Host, build_rootfs_tar, wait_for

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]

LINK_IMAGE = "localhost/ferry-attack-link:latest"
MARKER = f"ferry-attack-workload-{os.getpid()}"
#: The test workload, plus /dev/shm and volume content; the marker finds restored copies.
WORKLOAD_CMD = f"echo shm > /dev/shm/s; echo vol > /vol/v; {WORKLOAD} # {MARKER}"
VOLUME = "atkvol"
SECRET = "hostsecret"
SECRET_TEXT = b"the target host's own secret: no archive may read it\n"
CONFIG, SPEC, DEVSHM, DELETED = "config.dump", "spec.dump", "devshm-checkpoint.tar", "deleted.files"
SYM, LNK, DIR = tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE
#: Capabilities of the snapshotted workload (Podman's default set).
DEFAULT_CAPS = [
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
]


def _linked_rootfs_tar(dest: Path) -> Path:
    out = build_rootfs_tar(dest)
    link = tarfile.TarInfo("./data/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/"
    with tarfile.open(out, "a") as tar:
        tar.addfile(link)
    return out


def _copy_image(src: Host, dst: Host, image: str, work: Path) -> None:
    archive = work / (image.rsplit("/", 1)[-1].replace(":", "_") + ".tar")
    archive.unlink(missing_ok=True)
    src.podman("save", "-o", str(archive), image)
    dst.podman("load", "-i", str(archive))


@pytest.fixture(scope="module")
def lab(
    real_criu: None, rootfs_tar: Path, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    from prefect.settings import PREFECT_API_URL

    work = tmp_path_factory.mktemp("attack")
    pid = os.getpid()
    source = VfsHost(Path(f"/var/tmp/fth/{pid}-atk-s"))  # podman: runroot below 50 characters
    target = VfsHost(Path(f"/var/tmp/fth/{pid}-atk-t"))
    sentinel = make_sentinel(Path(f"/var/tmp/ferry-attack-sentinel-{pid}"))
    attacks = Path(f"/var/tmp/ferry-attack-{pid}")
    attacks.mkdir()
    try:
        source.podman("import", str(rootfs_tar), IMAGE)
        source.podman("import", str(_linked_rootfs_tar(work / "link-image")), LINK_IMAGE)
        for image in (IMAGE, LINK_IMAGE):
            _copy_image(source, target, image, work)
        secret = work / "secret"
        secret.write_bytes(SECRET_TEXT)
        target.podman("secret", "create", SECRET, str(secret))
        source.podman("run", "-d", "--name", "app", "-v", f"{VOLUME}:/vol", *ULIMITS, IMAGE, "sh", "-c", WORKLOAD_CMD)
        wait_for(lambda: source.counter("app") >= 20, what="the workload to count")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FERRY_PODMAN", source.env_value)
            mp.setenv("FERRY_STAGING", str(work / "staging"))
            result = snapshot("app", f"file://{work}/seed", leave_running=True)
        base = Unpacked.parse(Path(result.url.removeprefix("file://")).read_bytes())
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        env.update(
            FERRY_PODMAN=target.env_value,
            FERRY_STAGING=str(work / "staging"),
            PREFECT_API_URL=str(PREFECT_API_URL.value()),
            PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        )
        cid = source.podman("inspect", "--format", "{{.Id}}", "app").stdout.strip()
        userdata = [
            source.base / "root" / "vfs-containers" / cid / "userdata",
            source.base / "run" / "vfs-containers" / cid / "userdata",
        ]
        yield Lab(
            source,
            target,
            base,
            env,
            work / "stores",
            sentinel,
            attacks,
            MARKER,
            watched_mounts=[str(source.base), str(target.base), str(attacks), str(sentinel)],
            source_userdata=[p for p in userdata if p.exists()],
        )
    finally:
        for host in (source, target):
            host.cleanup()
            host.podman("volume", "prune", "-f", check=False)
        subprocess.run(["umount", "-R", "-l", str(attacks)], capture_output=True, check=False)
        for path in (source.base, target.base, sentinel, attacks):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def atk(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Attempt]:
    """This attack's container name, its own target tree on the host and a marker path."""
    short = request.node.name.removeprefix("test_").replace("[", "-").replace("]", "")
    digest = hashlib.sha256(short.encode()).hexdigest()[:6]
    short = "".join(c if c.isalnum() or c == "-" else "-" for c in short)[:36].strip("-") + "-" + digest
    name = f"atk-{short}"
    folder = lab.attacks / short
    # The target store holds no container or volume of its own: whatever is there was left by
    # an earlier attempt (already reported by it) and would make this one fail for its reason.
    lab.target.podman("rm", "-af", "-t", "0", check=False)
    lab.target.podman("volume", "prune", "-f", check=False)
    make_sentinel(folder / "target")
    (folder / "attacker").mkdir()
    yield Attempt(lab, name, folder / "target", folder / "marker")
    for mnt in sorted(mounts_below([str(folder)]), reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)


def _clone(lab: Lab) -> Unpacked:
    return lab.base.clone()


def _shell_hook(atk: Attempt) -> dict[str, object]:
    return {"path": "/bin/sh", "args": ["sh", "-c", f"echo pwned by a hook > {atk.marker}"]}


def _harm_if(ok: bool, text: str) -> list[str]:
    return [text] if ok else []


def _exec_writes(path: str) -> Exploit:
    """The container writes ``path``; whether that reached the host, the target tree says."""

    def exploit(atk: Attempt) -> list[str]:
        atk.exec("sh", "-c", f"echo pwned > {path}")
        return []

    return exploit


def _caps_of(pid: int | str) -> tuple[int, int]:
    return criu.process_caps(pid, "CapEff"), criu.seccomp_mode(pid)


def _default_mask() -> int:
    return sum(1 << _cap_names()[name] for name in DEFAULT_CAPS)


def _exec_privileges(atk: Attempt) -> list[str]:
    proc = atk.exec("cat", "/proc/self/status")  # the image has no grep
    fields = dict(line.split(":\t", 1) for line in proc.stdout.strip().splitlines() if ":\t" in line)
    caps, mode = int(fields.get("CapEff", "0"), 16), int(fields.get("Seccomp", "2"))
    return _harm_if(caps & ~_default_mask() != 0, f"podman exec got CapEff {caps:016x}") + _harm_if(
        mode == 0, "podman exec ran without seccomp"
    )


def _pid1_privileges(atk: Attempt) -> list[str]:
    pid = atk.pid()
    if not pid:
        return []
    caps, mode = _caps_of(pid)
    return _harm_if(caps & ~_default_mask() != 0, f"restored PID 1 ({pid}) has CapEff {caps:016x}") + _harm_if(
        mode == 0, f"restored PID 1 ({pid}) runs without seccomp"
    )


# ---------------------------------------------------------------------------------------------
# spec.dump: runc acts on it as root


@pytest.mark.parametrize(
    "hook", ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
)
def test_spec_hook_runs_a_host_command(lab: Lab, atk: Attempt, hook: str) -> None:
    u = _clone(lab)
    spec = u.json(SPEC)
    spec.setdefault("hooks", {})[hook] = [_shell_hook(atk)]
    u.set_json(SPEC, spec)
    atk.refused(u, r"hook")


def test_spec_hooks_in_a_second_spelling_that_python_does_not_see(lab: Lab, atk: Attempt) -> None:
    """Go's encoding/json matches keys case-insensitively and merges a second object into the
    first: ``"Hooks": {prestart}`` then ``"hooks": {}`` gives runc the prestart hook, while a
    Python reader of ``spec["hooks"]`` sees an empty object."""
    u = _clone(lab)
    spec = u.json(SPEC)
    text = (
        json.dumps(spec)[:-1] + ", " + json.dumps({"Hooks": {"Prestart": [_shell_hook(atk)]}})[1:-1] + ', "hooks": {}}'
    )
    u.set(SPEC, text.encode())
    atk.refused(u, r"hook|duplicate|spelling|twice")


def test_spec_extra_bind_mount_of_a_host_directory(lab: Lab, atk: Attempt) -> None:
    u = _clone(lab)
    spec = u.json(SPEC)
    spec["mounts"].append(
        {"destination": "/hostdir", "type": "bind", "source": str(atk.dir), "options": ["rbind", "rw"]}
    )
    u.set_json(SPEC, spec)
    atk.refused(u, r"mount", exploit=_exec_writes("/hostdir/pwned"))


@pytest.mark.parametrize("destination", ["/dev/shm", "/etc/hosts"])
def test_spec_second_mount_on_a_destination_podman_replaces(lab: Lab, atk: Attempt, destination: str) -> None:
    """Podman's RemoveMount drops only the first mount of /dev/shm, /etc/hosts, ...: a second one
    with a host source stays in the spec runc mounts."""
    u = _clone(lab)
    spec = u.json(SPEC)
    source = atk.dir if destination == "/dev/shm" else atk.dir / "victim"
    spec["mounts"].append(
        {"destination": destination, "type": "bind", "source": str(source), "options": ["rbind", "rw"]}
    )
    u.set_json(SPEC, spec)
    target = "/dev/shm/pwned" if destination == "/dev/shm" else "/etc/hosts"
    atk.refused(u, r"mount|" + destination, exploit=_exec_writes(target))


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
    u = _clone(lab)
    spec = u.json(SPEC)
    spec["annotations"]["org.criu.config"] = str(conf)
    u.set_json(SPEC, spec)
    atk.refused(u, r"org\.criu\.config|annotation", watch=[attacker])


def test_spec_grants_every_capability(lab: Lab, atk: Attempt) -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    names = [n for n in _cap_names() if _cap_names()[n] <= last]
    u = _clone(lab)
    spec = u.json(SPEC)
    spec["process"]["capabilities"] = dict.fromkeys(("bounding", "effective", "permitted", "inheritable"), names)
    u.set_json(SPEC, spec)
    atk.refused(u, r"capabilit", exploit=_exec_privileges)


def test_spec_drops_seccomp(lab: Lab, atk: Attempt) -> None:
    u = _clone(lab)
    spec = u.json(SPEC)
    del spec["linux"]["seccomp"]
    u.set_json(SPEC, spec)
    atk.refused(u, r"seccomp", exploit=_exec_privileges)


def test_spec_apparmor_unconfined(lab: Lab, atk: Attempt) -> None:
    """Refused on a host with AppArmor; on one without (this sandbox) there is nothing to
    disable, so a restore that drops the profile is acceptable."""
    u = _clone(lab)
    spec = u.json(SPEC)
    spec["process"]["apparmorProfile"] = "unconfined"
    u.set_json(SPEC, spec)
    atk.refused(u, r"apparmor", or_neutralised=not Path("/sys/module/apparmor").exists())


@pytest.mark.parametrize("kind", ["network", "ipc", "uts"])
def test_spec_host_namespace(lab: Lab, atk: Attempt, kind: str) -> None:
    """The container joins one of the host's namespaces: by path for the network (with
    config.dump saying Podman should not make one), by omission for the others."""
    u = _clone(lab)
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
        return _harm_if(same, f"the restored container shares the host's (this test's) {kind} namespace")

    atk.refused(u, r"namespace|" + kind, exploit=exploit)


def test_spec_unmasks_and_unprotects_proc(lab: Lab, atk: Attempt) -> None:
    """No masked or read-only paths: /proc/kcore, /proc/sysrq-trigger, /proc/sys as Podman
    would never hand them to a container."""
    u = _clone(lab)
    spec = u.json(SPEC)
    spec["linux"]["maskedPaths"] = []
    spec["linux"]["readonlyPaths"] = []
    u.set_json(SPEC, spec)

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("cat", "/proc/self/mountinfo")
        points = {line.split()[4] for line in proc.stdout.splitlines() if len(line.split()) > 4}
        shielded = points & {"/proc/kcore", "/proc/sysrq-trigger", "/proc/sys"}
        return _harm_if(
            proc.returncode == 0 and not shielded, "exec'd processes see /proc/kcore and /proc/sys unmasked"
        )

    atk.refused(u, r"masked|readonly|read-only", exploit=exploit, or_neutralised=True)


def test_spec_passes_a_host_device(lab: Lab, atk: Attempt) -> None:
    u = _clone(lab)
    spec = u.json(SPEC)
    spec["linux"].setdefault("devices", []).append(
        {"path": "/dev/hostkmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666, "uid": 0, "gid": 0}
    )
    spec["linux"]["resources"]["devices"].append({"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rwm"})
    u.set_json(SPEC, spec)

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("sh", "-c", "head -c 64 /dev/hostkmsg")
        return _harm_if(proc.returncode == 0 and bool(proc.stdout), "the container read the host's /dev/kmsg")

    atk.refused(u, r"device", exploit=exploit)


# ---------------------------------------------------------------------------------------------
# config.dump: Podman honours host paths and options in it


def _config_edit(lab: Lab, **values: object) -> Unpacked:
    u = _clone(lab)
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
    config = _clone(lab).json(CONFIG)
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
    atk.refused(_config_edit(lab, rootfs=str(atk.dir)), r"rootfs", exploit=_exec_writes("/pwned"))


def test_config_named_volume_binds_a_host_directory(lab: Lab, atk: Attempt) -> None:
    """``volume-opt`` options make Podman create the volume as a bind of a host directory, into
    which it then untars volumes/<name>.tar."""
    u = _clone(lab)
    config = u.json(CONFIG)
    for vol in config["namedVolumes"]:
        vol["options"] += ["volume-opt=type=none", "volume-opt=o=bind", f"volume-opt=device={atk.dir}"]
    u.set_json(CONFIG, config)
    atk.refused(u, r"volume", exploit=_exec_writes("/vol/pwned"))


def test_config_secrets_hand_over_a_host_secret(lab: Lab, atk: Attempt) -> None:
    u = _config_edit(lab, secrets=[{"name": SECRET, "id": "", "driver": "file", "UID": 0, "GID": 0, "Mode": 0o444}])

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("cat", f"/run/secrets/{SECRET}")
        return _harm_if(SECRET_TEXT.decode() in proc.stdout, "the container read the host's Podman secret")

    atk.refused(u, r"secret", exploit=exploit)


def test_config_timezone_climbs_out_of_zoneinfo(lab: Lab, atk: Attempt) -> None:
    secret = atk.dir / "sub" / "deeper" / "data.bin"
    u = _config_edit(lab, timezone="../../.." + str(secret))

    def exploit(a: Attempt) -> list[str]:
        proc = a.exec("cat", "/etc/localtime")
        return _harm_if(
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
    atk.refused(u, r"privileged", exploit=_exec_privileges)


# ---------------------------------------------------------------------------------------------
# JSON as Go reads it: keys match case-insensitively, the last duplicate wins


def test_config_second_spelling_of_the_image_id_selects_another_image(lab: Lab, atk: Attempt) -> None:
    """ferry reads ``rootfsImageID``; Podman also takes ``ROOTFSIMAGEID`` (the last wins) and
    restores on the image holding ``/data/link -> /``, through which the diff then writes."""
    link_id = lab.target.podman("image", "inspect", "--format", "{{.Id}}", LINK_IMAGE).stdout.strip()
    u = _clone(lab)
    text = (u.find(CONFIG).data or b"").decode()
    text = text.rstrip()[:-1] + f', "ROOTFSIMAGEID": "{link_id}", "ROOTFSIMAGENAME": "{LINK_IMAGE}"}}'
    u.set(CONFIG, text.encode())
    u.add_to_diff([Entry(f"data/link{atk.dir}/pwned", b"written through the image's symlink\n")])
    atk.refused(u, r"ROOTFSIMAGEID|rootfsImageID|spelling|duplicate|case")


def test_config_duplicate_key(lab: Lab, atk: Attempt) -> None:
    """The same key twice: whichever a reader keeps, the archive is ambiguous and refused."""
    u = _clone(lab)
    text = (u.find(CONFIG).data or b"").decode().rstrip()
    text = text[:-1] + f', "conmonPidFile": {json.dumps(str(atk.dir / "victim"))}}}'
    u.set(CONFIG, text.encode())
    atk.refused(u, r"duplicate|twice|conmonPidFile")


# ---------------------------------------------------------------------------------------------
# Nested tars Podman untars as root, following absolute symlinks


def _escape_entries(atk: Attempt) -> list[Member]:
    """A symlink to the target, then through it: a new file, an overwrite, and a file where a
    directory is (Podman's untar removes the directory to make room)."""
    return [
        Member.of(Entry("escape", type=SYM, linkname=str(atk.dir))),
        Member.of(Entry("escape/pwned", b"created through a symlink\n")),
        Member.of(Entry("escape/victim", b"overwritten through a symlink\n")),
        Member.of(Entry("escape/sub", b"a file where a host directory was\n")),
    ]


def test_devshm_tar_writes_through_an_absolute_symlink(lab: Lab, atk: Attempt) -> None:
    u = _clone(lab)
    u.set_tar(DEVSHM, [*u.tar(DEVSHM), *_escape_entries(atk)])
    atk.refused(u, r"devshm-checkpoint\.tar")


def test_volume_tar_writes_through_an_absolute_symlink(lab: Lab, atk: Attempt) -> None:
    u = _clone(lab)
    name = f"volumes/{VOLUME}.tar"
    u.set_tar(name, [*u.tar(name), *_escape_entries(atk)])
    atk.refused(u, r"volumes/" + VOLUME)


def test_criu_tmpfs_image_writes_through_an_absolute_symlink(lab: Lab, atk: Attempt) -> None:
    """CRIU untars checkpoint/tmpfs-dev-*.tar.gz.img (the contents of the container's tmpfs
    mounts) itself: the same confinement applies."""
    u = _clone(lab)
    member = next(m for m in u.members if m.info.name.startswith("checkpoint/tmpfs-dev-"))
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(member.data or b"")), mode="r:") as tar:
        inner = [Member(i, tar.extractfile(i).read() if i.isreg() else None) for i in tar]  # type: ignore[union-attr]
    member.data = gzip.compress(pack_tar([*inner, *_escape_entries(atk)], tarfile.GNU_FORMAT))
    member.info.size = len(member.data)
    atk.refused(u, r"tmpfs")


# ---------------------------------------------------------------------------------------------
# CRIU images: the restored process gets the credentials written in core-*.img


def test_the_forged_core_image_says_what_the_attack_claims(lab: Lab, tmp_path: Path) -> None:
    """Self-check of the forge (no restore): CRIU's own decoder, crit, reads the rewritten
    core image with the full capability set and seccomp off, and every other field unchanged."""
    member = next(m for m in lab.base.members if m.info.name.startswith("checkpoint/core-") and m.data)
    caps = criu.process_caps("self", "CapBnd")
    decoded = {}
    for label, data in (
        ("before", member.data),
        ("after", criu.rewrite_core(member.data or b"", caps=caps, seccomp_off=True)),
    ):
        (tmp_path / label).write_bytes(data or b"")
        out = subprocess.run(
            ["crit", "decode", "-i", str(tmp_path / label)], capture_output=True, text=True, check=True
        )
        decoded[label] = json.loads(out.stdout)["entries"][0]
    before, after = decoded["before"], decoded["after"]
    creds = after["thread_core"]["creds"]
    for key in ("cap_inh", "cap_prm", "cap_eff", "cap_bnd"):
        assert creds[key] == criu.cap_words(caps), key
    assert before["thread_core"]["seccomp_mode"] == "filter"
    assert after["thread_core"]["seccomp_mode"] == "disabled" and "seccomp_filter" not in after["thread_core"]
    for part in (before, after):
        for key in ("creds", "seccomp_mode", "seccomp_filter"):
            part["thread_core"].pop(key, None)
    assert after == before


@pytest.mark.parametrize("change", ["capabilities", "seccomp", "both", "beyond-this-host"])
def test_criu_core_image_raises_credentials(lab: Lab, atk: Attempt, change: str) -> None:
    """Capabilities up to what CRIU itself holds, seccomp off, or both; ``beyond-this-host``
    asks for every capability the kernel knows, more than this sandbox grants even to root (the
    capset fails: issue 10 saw CRIU hang, Podman time out and a privileged process stay behind)."""
    every = (1 << (int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1)) - 1
    caps = {"seccomp": None, "beyond-this-host": every}.get(change, criu.process_caps("self", "CapBnd"))
    u = _clone(lab)
    for member in u.members:
        if member.info.name.startswith("checkpoint/core-") and member.data:
            member.data = criu.rewrite_core(member.data, caps=caps, seccomp_off=change != "capabilities")
            member.info.size = len(member.data)
    atk.refused(u, r"core-\d+\.img|capabilit|seccomp", exploit=_pid1_privileges)


# ---------------------------------------------------------------------------------------------
# The rootfs diff, as Podman's untar applies it


def test_diff_directory_then_symlink_of_the_same_name(lab: Lab, atk: Attempt) -> None:
    """Go's untar sets directory times after the last entry, through whatever the path is then:
    here a symlink to a host directory."""
    u = _clone(lab)
    d = Entry("data/d", type=DIR, mode=0o755)
    u.add_to_diff([d, Entry("data/d", type=SYM, linkname=str(atk.dir))])
    atk.refused(u, r"data/d")


def test_diff_hardlink_whose_parent_is_remade_as_a_symlink(lab: Lab, atk: Attempt) -> None:
    """``data/p/victim`` is a file of the diff, then ``data/p`` becomes a symlink to the target
    directory, then ``data/h`` hardlinks ``data/p/victim`` — now the host's file — and is
    chowned (vfs: same file system, no EXDEV)."""
    u = _clone(lab)
    u.add_to_diff(
        [
            Entry("data/p", type=DIR, mode=0o755),
            Entry("data/p/victim", b"x"),
            Entry("data/p", type=SYM, linkname=str(atk.dir)),
        ]
    )
    link = Member.of(Entry("data/h", type=LNK, linkname="data/p/victim"))
    link.info.uid = link.info.gid = 4242
    u.set(DIFF, pack_tar([*u.diff(), link]))
    atk.refused(u, r"data/p|data/h|hardlink")


def _retyped_diff(u: Unpacked, name: str, data: bytes, typeflag: bytes) -> None:
    """Add a regular file to the diff, then make its header say ``typeflag`` (GNU sparse 'S'
    with a one-extent map covering the data, or contiguous '7')."""
    raw = bytearray(pack_tar([*u.diff(), Member.of(Entry(name, data))], tarfile.GNU_FORMAT))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw)), mode="r:") as tar:
        offset = tar.getmember(name).offset
    header = raw[offset : offset + 512]
    header[156:157] = typeflag
    if typeflag == tarfile.GNUTYPE_SPARSE:
        header[386:398] = b"%011o\0" % 0
        header[398:410] = b"%011o\0" % len(data)
        header[483:495] = b"%011o\0" % len(data)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    raw[offset : offset + 512] = header
    u.set(DIFF, bytes(raw))


@pytest.mark.parametrize("typeflag", [tarfile.GNUTYPE_SPARSE, tarfile.CONTTYPE], ids=["gnu-sparse", "contiguous"])
def test_diff_entry_type_podman_cannot_apply(lab: Lab, atk: Attempt, typeflag: bytes) -> None:
    """Podman fails on these late, after it has created the container: ferry must refuse them
    before Podman is asked to do anything."""
    u = _clone(lab)
    _retyped_diff(u, "data/odd", b"0123456789" * 100, typeflag)
    atk.refused(u, r"data/odd|sparse|contiguous|type")


# ---------------------------------------------------------------------------------------------
# Bounded parsing: a clean refusal, never a RecursionError


DEPTH = 100_000


def test_deleted_files_nested_100k_deep(lab: Lab, atk: Attempt) -> None:
    u = _clone(lab)
    u.set(DELETED, deep_json(DEPTH))
    atk.refused(u, r"deleted\.files")


@pytest.mark.parametrize("member", [CONFIG, SPEC])
def test_dump_nested_100k_deep(lab: Lab, atk: Attempt, member: str) -> None:
    u = _clone(lab)
    text = (u.find(member).data or b"").rstrip()
    u.set(member, text[:-1] + b', "deep": ' + deep_json(DEPTH) + b"}")
    atk.refused(u, re.escape(member))


def test_manifest_and_sidecar_nested_100k_deep(lab: Lab, atk: Attempt) -> None:
    """The manifest inside and the store's sidecar, both with a 100k-deep field: consistent
    with each other and with the bytes, so only bounded parsing can refuse them cleanly."""
    u = _clone(lab)
    raw = json.dumps(u.recomputed())[:-1].encode() + b', "deep": ' + deep_json(DEPTH) + b"}"
    data = pack([*u.members, Member.of(Entry(MANIFEST, raw))], u.compression)
    filename = "attack" + SUFFIX[u.compression]
    record = {"archive": filename, "size": len(data), "sha256": sha256(data), "compression": u.compression}
    sidecar = json.dumps({**record, "manifest": "@"}).encode().replace(b'"@"', raw)
    atk.refused(Sealed(filename, data, sidecar), r"manifest|sidecar|\.ferry\.json")


# ---------------------------------------------------------------------------------------------
# Honest use: must work


def test_unchanged_snapshot_restores_on_another_store_and_leaves_the_original_alone(lab: Lab, atk: Attempt) -> None:
    """The lab's own snapshot, unchanged, restores on the target store; the original keeps
    running on the source store with its files (pid files, shm, userdata) untouched, also once
    the copy is removed. (Its config.dump names the source's conmon pid file and shm mount.)"""
    before = {p: tree_state(p) for p in lab.source_userdata}
    proc = restore_hostile(lab.base.clone(), store=lab.store / atk.name, name=atk.name, env=lab.env)
    try:
        assert proc.returncode == 0, proc.stderr
        assert lab.target.state(atk.name) == "running"
        assert lab.target.counter(atk.name) > 0
        assert lab.target.exec(atk.name, "cat", "/vol/v", "/dev/shm/s").split() == ["vol", "shm"]
    finally:
        lab.target.podman("rm", "-f", "-t", "0", atk.name, check=False)
        lab.target.podman("volume", "rm", "-f", VOLUME, check=False)
    assert lab.source.state("app") == "running"
    after = {p: tree_state(p) for p in lab.source_userdata}
    assert after == before, f"the original's files changed: { {str(p): describe(before[p], after[p]) for p in before} }"


def _snapshot(host: Host, name: str, store: Path) -> str:
    return snapshot(name, f"file://{store}", leave_running=True).url


def _cli_env(host: Host, tmp_path: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(
        FERRY_PODMAN=host.env_value,
        FERRY_STAGING=str(tmp_path / "staging"),
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


def _userdata(host: Host, name: str) -> list[Path]:
    cid = host.podman("inspect", "--format", "{{.Id}}", name).stdout.strip()
    return [
        host.base / "root" / "overlay-containers" / cid / "userdata",
        host.base / "run" / "overlay-containers" / cid / "userdata",
    ]


def _mounted(path: Path) -> bool:
    return any(line.split()[4] == str(path) for line in Path("/proc/self/mountinfo").read_text().splitlines())


def test_named_copy_beside_its_original_then_removed_leaves_the_original_alone(
    host: Host, tmp_path: Path, staging: Path
) -> None:
    host.podman("run", "-d", "--name", "app", *ULIMITS, IMAGE, "sh", "-c", f"echo shm > /dev/shm/s; {WORKLOAD}")
    wait_for(lambda: host.counter("app") >= 20, what="the workload to count")
    url = _snapshot(host, "app", tmp_path / "store")
    userdata = _userdata(host, "app")
    shm = userdata[0] / "shm"
    assert _mounted(shm)
    pidfiles = {p: p.read_bytes() for p in (userdata[1] / "conmon.pid", userdata[1] / "pidfile") if p.exists()}
    before = {p: tree_state(p) for p in userdata}

    archive = Unpacked.parse(Path(url.removeprefix("file://")).read_bytes())
    proc = restore_hostile(archive, store=tmp_path / "again", name="copy", env=_cli_env(host, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert host.state("copy") == "running"
    host.podman("rm", "-f", "-t", "0", "copy")

    after = {p: tree_state(p) for p in userdata}  # first: an exec's session lives in the userdata
    assert host.state("app") == "running"
    assert _mounted(shm), "removing the copy unmounted the original's /dev/shm"
    assert host.exec("app", "cat", "/dev/shm/s").strip() == "shm"
    assert {p: p.read_bytes() for p in pidfiles if p.exists()} == pidfiles, "the original's pid files changed"
    assert after == before, (
        f"the original's userdata changed: { {str(p): describe(before[p], after[p]) for p in before} }"
    )


def test_restore_where_podman_paths_differ_from_the_source(
    host: Host, other_host: Host, tmp_path: Path, staging: Path
) -> None:
    """The source container is gone and its store's directories moved away; the target store
    has other --root/--runroot paths. Nothing of the source's paths may be needed."""
    host.run_workload("app")
    url = _snapshot(host, "app", tmp_path / "store")
    host.podman("rm", "-f", "-t", "0", "app")
    subprocess.run(["umount", "-R", str(host.base / "root" / "overlay")], capture_output=True, check=False)
    moved = host.base / "moved-away"
    moved.mkdir()
    for part in ("root", "run", "tmp"):
        if (host.base / part).exists():
            (host.base / part).rename(moved / part)

    archive = Unpacked.parse(Path(url.removeprefix("file://")).read_bytes())
    proc = restore_hostile(archive, store=tmp_path / "again", name="app", env=_cli_env(other_host, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert other_host.state("app") == "running"
    counted = other_host.counter("app")
    wait_for(lambda: other_host.counter("app") > counted, what="the restored copy to count on")
    assert not any((host.base / part).exists() for part in ("root", "run")), "the restore recreated the source's paths"


def _cap_names() -> dict[str, int]:
    names = [
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE",
    ]  # fmt: skip
    return {f"CAP_{n}": i for i, n in enumerate(names)}

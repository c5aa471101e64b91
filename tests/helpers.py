"""Test helpers: private Podman stores standing for hosts, a busybox image, a workload."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "cat", "echo", "sleep", "usleep", "rm", "ls", "mkdir", "tail", "wc", "head", "ln", "nc", "truncate")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
IMAGE = "localhost/ferry-test:latest"

# Keeps a counter in shell memory, mirrors it to /data/counter and appends it to /data/log;
# also deletes a file of the image and adds one, so the rootfs diff has all three kinds.
WORKLOAD = (
    "rm -f /etc/deleteme; mkdir -p /data/new; echo added > /data/new/added; "
    "i=0; while :; do i=$((i+1)); echo $i > /data/counter; echo $i >> /data/log; usleep 5000; done"
)


def build_rootfs_tar(dest: Path) -> Path:
    """A tiny image root: busybox-static and a few applets, a file to delete, /data."""
    root = dest / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for d in ("etc", "data", "tmp", "proc", "sys", "dev", "run"):
        (root / d).mkdir()
    (root / "etc" / "deleteme").write_text("this file is deleted by the workload\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
    out = dest / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(root, arcname=".")
    return out


def linked_rootfs_tar(dest: Path) -> Path:
    """The tiny image root plus ``/data/link -> /``: an image whose own symlink leads out of it."""
    out = build_rootfs_tar(dest)
    link = tarfile.TarInfo("./data/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/"
    with tarfile.open(out, "a") as tar:
        tar.addfile(link)
    return out


@dataclass
class Host:
    """A separate Podman store (--root/--runroot) standing for one host."""

    base: Path

    @property
    def prefix(self) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.base / "run"),
            "--tmpdir",
            str(self.base / "tmp"),
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--runtime",
            "runc",
        ]

    @property
    def env_value(self) -> str:
        return shlex.join(self.prefix)

    def podman(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr}")
        return proc

    def run_workload(self, name: str, image: str = IMAGE) -> str:
        cid = self.podman("run", "-d", "--name", name, *ULIMITS, image, "sh", "-c", WORKLOAD).stdout.strip()
        wait_for(lambda: self.counter(name) >= 20, what=f"{name} to start counting")
        return cid

    def exec(self, name: str, *cmd: str) -> str:
        return self.podman("exec", name, *cmd).stdout

    def counter(self, name: str) -> int:
        out = self.podman("exec", name, "cat", "/data/counter", check=False).stdout.strip()
        return int(out) if out.isdigit() else -1

    def state(self, name: str) -> str:
        proc = self.podman("container", "inspect", "--format", "{{.State.Status}}", name, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else "absent"

    def names(self) -> set[str]:
        out = self.podman("ps", "-a", "--format", "{{.Names}}").stdout
        return set(out.split())

    def cleanup(self) -> None:
        self.podman("rm", "-af", "-t", "0", check=False)
        self.podman("image", "prune", "-af", check=False)
        subprocess.run(["umount", "-R", str(self.base / "root" / "overlay")], capture_output=True, check=False)


def wait_for(predicate, *, what: str, timeout: float = 60, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def assert_consecutive_log(text: str) -> list[int]:
    """The workload's log must count 1, 2, 3, ... with no restart, gap or repeat.

    A restart from 0 means memory was lost; a gap or a repeat means the rootfs and the memory
    were captured at different instants."""
    values = [int(line) for line in text.split()]
    assert values, "empty log"
    assert values[0] == 1, f"log starts at {values[0]}"
    for prev, cur in itertools.pairwise(values):
        assert cur == prev + 1, f"log jumps from {prev} to {cur} (at line {values.index(cur)})"
    return values


def env_with(host: Host, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["FERRY_PODMAN"] = host.env_value
    env.update(extra)
    return env


def s3_env(env: dict[str, str], port: int) -> dict[str, str]:
    """S3 storage options for an endpoint on this loopback port (botocore tries once)."""
    options = {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    return dict(env, FERRY_STORAGE_OPTIONS=json.dumps(options))


def signed_sidecar(raw: bytes) -> bytes:
    """A sidecar's JSON signed with this test session's key (FERRY_SIGNING_KEY), as a trusted snapshot
    host (or an attacker holding its key) would sign it: everything else is left as it is."""
    from ferry import keys
    from ferry.archive.manifest import Sidecar
    from ferry.archive.signing import sign

    key = keys.signing_key()
    assert key is not None, "the session's signing key is not set (tests/conftest.py signing_keys)"
    record = json.loads(raw)
    record["signature"] = sign(Sidecar.from_json(raw), key).signature
    return json.dumps(record, indent=1, sort_keys=True).encode()

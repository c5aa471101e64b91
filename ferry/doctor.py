"""``ferry doctor``: can this host checkpoint and restore? If not, exactly why and how to fix it."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

from ferry.runtime import criu_check, criu_version, podman_prefix
from ferry.staging import staging_root

PROVISION_FIX = (
    "run `scripts/provision-criu` from the ferry checkout (it downloads Debian trixie's CRIU 4.1\n"
    "into /opt/ferry-criu without touching installed packages), then put it first on PATH:\n"
    "export PATH=/opt/ferry-criu/bin:$PATH   (or install CRIU >= 4.0 from your distribution)"
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok, but the operator should act


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def check_root() -> Check:
    ok = os.geteuid() == 0
    return Check(
        "root",
        ok,
        "running as root" if ok else f"running as uid {os.geteuid()}",
        "CRIU checkpoint/restore of containers needs root: run ferry with sudo or as root",
    )


def check_podman() -> Check:
    prefix = podman_prefix()
    code, out = _run([*prefix, "version", "--format", "{{.Client.Version}}"])
    if code != 0:
        return Check(
            "podman",
            False,
            f"`{' '.join(prefix)} version` failed: {out[-300:]}",
            "apt-get install podman, or set FERRY_PODMAN to the podman command line to use",
        )
    return Check("podman", True, f"podman {out.splitlines()[-1]} ({' '.join(prefix)})")


def check_runtime() -> Check:
    prefix = podman_prefix()
    code, out = _run([*prefix, "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}"])
    if code != 0:
        return Check("OCI runtime", False, f"podman info failed: {out[-300:]}", "fix podman first")
    name = out.split()[0] if out else "?"
    if name != "runc":
        return Check(
            "OCI runtime",
            False,
            f"podman uses {name}; Debian 12's crun cannot checkpoint "
            '("configured runtime does not support checkpoint/restore")',
            "apt-get install runc and run ferry with FERRY_PODMAN='podman --runtime runc'",
        )
    runc = shutil.which("runc")
    return Check("OCI runtime", True, f"runc ({runc or out.split()[-1]})")


def check_criu() -> Check:
    path = shutil.which("criu")
    if path is None:
        return Check("criu", False, "criu is not on PATH", PROVISION_FIX)
    ok, out = criu_check()
    version = criu_version() or "?"
    if ok:
        return Check("criu", True, f"criu {version} at {path}: `criu check` passes")
    if "vdso" in out.lower() or "kerndat" in out.lower():
        return Check(
            "criu",
            False,
            f"criu {version} at {path} fails `criu check` on kernel {platform.release()}: it does "
            "not understand this kernel's vDSO layout (kernels 6.13+ add a [vvar_vclock] mapping; "
            f'CRIU before 4.0 stops with "vdso: Unexpected rt vDSO area bounds"). Output: {out[-300:]}',
            PROVISION_FIX,
        )
    return Check(
        "criu",
        False,
        f"criu {version} at {path} fails `criu check`: {out[-500:]}",
        "read the output above; CRIU needs root and a kernel with CONFIG_CHECKPOINT_RESTORE",
    )


def check_kernel() -> Check:
    release = platform.release()
    return Check("kernel", True, f"Linux {release}")


def check_staging() -> Check:
    root = staging_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        ok = os.access(root, os.W_OK)
    except OSError:
        ok = False
    free = shutil.disk_usage(root).free if ok else 0
    return Check(
        "staging",
        ok,
        f"{root} writable, {free >> 20} MiB free" if ok else f"{root} not writable",
        "set FERRY_STAGING to a writable directory with room for one archive",
    )


def check_signing() -> Check:
    """A signing key (snapshots) and trusted keys (restores): missing ones are warnings, broken ones failures."""
    from ferry import keys
    from ferry.errors import UsageError

    try:
        own = keys.signing_key()
        ring = keys.trusted_keys(include_own=False)
    except UsageError as exc:
        return Check("signing", False, str(exc), "fix the key file, or create a new key pair with `ferry keygen`")
    gaps = []
    if own is None:
        gaps.append(
            f"no signing key ({keys.SIGNING_ENV} or {keys.DEFAULT_SIGNING_KEY}): snapshots taken here are "
            "unsigned and restores refuse them unless run with --allow-unsigned"
        )
    if not ring.keys:
        gaps.append(
            f"no trusted keys ({keys.TRUSTED_ENV} or {keys.DEFAULT_TRUSTED_KEYS}): restores here refuse archives "
            "signed by other hosts unless run with --allow-unsigned"
        )
    fix = (
        "run `ferry keygen` on each snapshot host, and add the public key line it prints to "
        f"{keys.DEFAULT_TRUSTED_KEYS} (or {keys.TRUSTED_ENV}) on each restoring host"
    )
    if gaps:
        return Check("signing", True, "; ".join(gaps), fix, warning=True)
    names = ", ".join(sorted(k.name for k in ring.keys.values()))
    return Check("signing", True, f"snapshots are signed; restores trust {len(ring.keys)} key(s): {names}")


def run_checks() -> list[Check]:
    return [
        check_root(),
        check_podman(),
        check_runtime(),
        check_criu(),
        check_kernel(),
        check_staging(),
        check_signing(),
    ]

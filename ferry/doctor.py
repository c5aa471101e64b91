"""``ferry doctor``: can this host checkpoint and restore? If not, exactly why and how to fix it."""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass

from ferry.criu_probe import ProbeResult
from ferry.runtime import criu_check, criu_feature, criu_probe, criu_version, podman_prefix, run_tool
from ferry.staging import staging_root

PROVISION_FIX = (
    "run `scripts/provision-criu` from the ferry checkout: it probes the distro's CRIU, then Debian\n"
    "trixie's (4.1) and forky's (4.2), and unpacks the first that really dumps and restores a process\n"
    "holding TCP sockets into /opt/ferry-criu without touching installed packages; then put it first\n"
    "on PATH: export PATH=/opt/ferry-criu/bin:$PATH   (or install CRIU >= 4.2 from your distribution)"
)
NON_ROOT_USER = "nobody"


@dataclass(frozen=True)
class Check:
    """One line of the report. ``status``: ok, fail (the host cannot checkpoint/restore),
    warn (some containers cannot) or info (a capability ferry does not need)."""

    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"


def _check(name: str, ok: bool, detail: str, fix: str = "") -> Check:
    return Check(name, "ok" if ok else "fail", detail, fix)


def check_root() -> Check:
    ok = os.geteuid() == 0
    return _check(
        "root",
        ok,
        "running as root" if ok else f"running as uid {os.geteuid()}",
        "CRIU checkpoint/restore of containers needs root: run ferry with sudo or as root",
    )


def check_podman() -> Check:
    prefix = podman_prefix()
    code, out = run_tool([*prefix, "version", "--format", "{{.Client.Version}}"])
    if code != 0:
        return _check(
            "podman",
            False,
            f"`{' '.join(prefix)} version` failed: {out[-300:]}",
            "apt-get install podman, or set FERRY_PODMAN to the podman command line to use",
        )
    return _check("podman", True, f"podman {out.splitlines()[-1]} ({' '.join(prefix)})")


def check_runtime() -> Check:
    prefix = podman_prefix()
    code, out = run_tool([*prefix, "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}"])
    if code != 0:
        return _check("OCI runtime", False, f"podman info failed: {out[-300:]}", "fix podman first")
    name = out.split()[0] if out else "?"
    if name != "runc":
        return _check(
            "OCI runtime",
            False,
            f"podman uses {name}; Debian 12's crun cannot checkpoint "
            '("configured runtime does not support checkpoint/restore")',
            "apt-get install runc and run ferry with FERRY_PODMAN='podman --runtime runc'",
        )
    runc = shutil.which("runc")
    return _check("OCI runtime", True, f"runc ({runc or out.split()[-1]})")


def check_criu() -> Check:
    path = shutil.which("criu")
    if path is None:
        return _check("criu", False, "criu is not on PATH", PROVISION_FIX)
    ok, out = criu_check()
    version = criu_version() or "?"
    if ok:
        return _check("criu", True, f"criu {version} at {path}: `criu check` passes")
    if "vdso" in out.lower() or "kerndat" in out.lower():
        return _check(
            "criu",
            False,
            f"criu {version} at {path} fails `criu check` on kernel {platform.release()}: {VDSO_WHY}. "
            f"Output: {out[-300:]}",
            PROVISION_FIX,
        )
    return _check(
        "criu",
        False,
        f"criu {version} at {path} fails `criu check`: {out[-500:]}",
        "read the output above; CRIU needs root and a kernel with CONFIG_CHECKPOINT_RESTORE",
    )


def check_kernel() -> Check:
    release = platform.release()
    return _check("kernel", True, f"Linux {release}")


def check_staging() -> Check:
    root = staging_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        ok = os.access(root, os.W_OK)
    except OSError:
        ok = False
    free = shutil.disk_usage(root).free if ok else 0
    return _check(
        "staging",
        ok,
        f"{root} writable, {free >> 20} MiB free" if ok else f"{root} not writable",
        "set FERRY_STAGING to a writable directory with room for one archive",
    )


VDSO_WHY = (
    "it does not understand this kernel's vDSO layout (kernels 6.13+ add a [vvar_vclock] mapping; "
    'CRIU before 4.0 stops with "vdso: Unexpected rt vDSO area bounds")'
)
PASSCRED_WHY = (
    "Linux 6.16 restricted SO_PASSCRED/SO_PASSSEC to unix and netlink sockets, and CRIU before 4.2 "
    'reads them on every socket, so it stops with "Can\'t get 1:16 opt: Operation not supported" on '
    "any process holding an inet socket (upstream CRIU issues 2705 and 2718). `criu check` still "
    "passes, but a container running any network server fails to checkpoint"
)
WHAT_PROBE_DOES = (
    "a throwaway process holding a listening TCP socket on 127.0.0.1, an established connection and "
    "an flock'd file, dumped and restored with --tcp-established --file-locks"
)


def _probe_text(result: ProbeResult) -> str:
    text = f"{result.detail} ({result.seconds:.1f} s)" if result.ok else f"{result.stage}: {result.detail}"
    if result.errors:
        text += ". CRIU said: " + " | ".join(result.errors[-4:])
    return text


def check_criu_probe() -> tuple[Check, ProbeResult | None]:
    """Dump and restore a real process as root (what every container ferry moves needs)."""
    if shutil.which("criu") is None:
        return _check("criu probe", False, "not run: criu is not on PATH", PROVISION_FIX), None
    if os.geteuid() != 0:
        return _check("criu probe", False, "not run: it needs root", "run ferry doctor as root"), None
    result = criu_probe()
    who = f"criu {result.version or '?'} on Linux {platform.release()}"
    if result.ok:
        return _check("criu probe", True, f"{who}: {_probe_text(result)}"), result
    if result.kind == "socket-passcred":
        detail = f"{who} cannot checkpoint a process holding TCP sockets: {PASSCRED_WHY}. {_probe_text(result)}"
        fix = "install CRIU >= 4.2; " + PROVISION_FIX
        return _check("criu probe", False, detail, fix), result
    if result.kind == "vdso":
        return _check("criu probe", False, f"{who}: {VDSO_WHY}. {_probe_text(result)}", PROVISION_FIX), result
    detail = f"{who} failed to dump and restore {WHAT_PROBE_DOES}: {_probe_text(result)}"
    fix = "read CRIU's errors above; if this CRIU is older than 4.2, " + PROVISION_FIX
    return _check("criu probe", False, detail, fix), result


def check_criu_probe_non_root(root: ProbeResult | None) -> Check:
    """The same probe with the process running as an unprivileged user (most images' services)."""
    name = f"criu probe as {NON_ROOT_USER}"
    if root is None or not root.ok:
        return Check(name, "info", "not run: the probe as root fails (above)")
    result = criu_probe(user=NON_ROOT_USER)
    if result.ok:
        return _check(name, True, f"a process running as {NON_ROOT_USER}: {_probe_text(result)}")
    if result.kind == "rlimit-denied":
        return Check(
            name,
            "warn",
            "this host denies prlimit on another uid's process even to root (CRIU: \"Can't get rlimit "
            '... Operation not permitted"), so containers whose processes run as a non-root user (e.g. '
            "PostgreSQL, nginx's workers) cannot be checkpointed here; containers running as root can. "
            "A limit of this sandbox or its seccomp/LSM policy: ordinary hosts allow it.",
            "run such services as root in their container here, or use a host that allows prlimit(2) on other uids",
        )
    return Check(
        name,
        "warn",
        f"a process running as {NON_ROOT_USER} could not be checkpointed: {_probe_text(result)}",
        "containers whose processes run as a non-root user will fail to checkpoint; read CRIU's errors above",
    )


def check_dirty_tracking() -> Check:
    if shutil.which("criu") is None:
        return Check("memory tracking", "info", "not checked: criu is not on PATH")
    ok, out = criu_feature("mem_dirty_track")
    if ok:
        return Check("memory tracking", "ok", "soft-dirty memory tracking works (CRIU pre-dump is possible)")
    if "dirty tracking is off" not in out.lower():
        return Check("memory tracking", "info", f"not checked: `criu check --feature mem_dirty_track`: {out[-200:]}")
    return Check(
        "memory tracking",
        "info",
        "soft-dirty memory tracking is off (`criu check --feature mem_dirty_track` fails), so CRIU "
        "pre-dump / iterative migration cannot work on this host; ferry's snapshots do not need it"
        f". CRIU: {out.splitlines()[-1][-200:]}",
    )


def run_checks() -> list[Check]:
    probe, result = check_criu_probe()
    return [
        check_root(),
        check_podman(),
        check_runtime(),
        check_criu(),
        probe,
        check_criu_probe_non_root(result),
        check_dirty_tracking(),
        check_kernel(),
        check_staging(),
    ]

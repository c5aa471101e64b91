"""The one boundary between ferry and the host's container runtime.

Every podman and criu subprocess ferry runs is started here, as an argv list (never a shell),
and every failure is translated into a :mod:`ferry.errors` exception that names the container,
the command, what it printed, and the tail of CRIU's log when there is one. Unit tests replace
this class with a fake; end-to-end tests run it against real Podman and CRIU.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferry import cgroups
from ferry import criu_probe as _probe
from ferry.archive.manifest import Source
from ferry.errors import (
    CheckpointError,
    ContainerNotFoundError,
    ContainerStateError,
    RestoreError,
    RuntimeCommandError,
    UnsupportedArchiveError,
)
from ferry.options import DEFAULT_RESTORE_TIMEOUT_S, DumpOptions, RestoreOptions

CGROUP_ROOT = Path("/sys/fs/cgroup")
LOG_TAIL_LINES = 25
_LOG_FILE_RE = re.compile(r"log file: ([^\s\"\\]+)")


@dataclass(frozen=True)
class Mount:
    """One entry of ``podman inspect``'s Mounts: a named volume or a bind-mounted host path."""

    type: str  # "volume" or "bind"
    source: str
    destination: str
    name: str = ""  # the volume's name


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    state: str
    pid: int
    image_id: str
    image_name: str
    static_dir: str
    checkpointed: bool = False
    mounts: tuple[Mount, ...] = ()

    @property
    def bind_mounts(self) -> tuple[Mount, ...]:
        return tuple(m for m in self.mounts if m.type == "bind")


@dataclass(frozen=True)
class Changes:
    """``podman container diff``: paths are container-absolute."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointStats:
    frozen_us: int = 0
    runtime_us: int = 0
    total_us: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


def podman_prefix() -> list[str]:
    """The podman command line prefix: ``FERRY_PODMAN`` (e.g. with --root/--runroot) or podman."""
    return shlex.split(os.environ.get("FERRY_PODMAN", "podman")) or ["podman"]


def tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Podman:
    """Podman (with runc and CRIU underneath), driven through its CLI."""

    def __init__(self, prefix: list[str] | None = None) -> None:
        self.prefix = prefix if prefix is not None else podman_prefix()

    # -- plumbing ---------------------------------------------------------------------------

    def _run(
        self,
        args: list[str],
        *,
        what: str,
        error: type[RuntimeCommandError] = RuntimeCommandError,
        timeout: float | None = 600,
        log_hint: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.prefix, *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise RuntimeCommandError(
                f"Cannot {what}: {argv[0]!r} is not installed or not on PATH. Install podman "
                "(apt-get install podman runc) or set FERRY_PODMAN to the podman command to use.",
                argv=argv,
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise error(f"Cannot {what}: podman did not finish within {timeout} s.", argv=argv) from exc
        if proc.returncode != 0:
            log = _LOG_FILE_RE.search(proc.stderr)
            log_path = log.group(1) if log else log_hint
            raise error(f"Cannot {what}.", argv=argv, stderr=proc.stderr, log_tail=tail(log_path) if log_path else "")
        return proc

    def _json(self, args: list[str], *, what: str, error: type[RuntimeCommandError] = RuntimeCommandError) -> Any:
        out = self._run(args, what=what, error=error).stdout
        try:
            return json.loads(out)
        except json.JSONDecodeError as exc:
            raise RuntimeCommandError(f"Cannot {what}: podman printed no JSON.", stderr=out[-500:]) from exc

    # -- containers -------------------------------------------------------------------------

    def inspect(self, container: str) -> ContainerInfo:
        argv = [*self.prefix, "container", "inspect", container]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
        if proc.returncode != 0:
            if "no such container" in proc.stderr.lower():
                raise ContainerNotFoundError(
                    f"There is no container {container!r} on this host (podman: "
                    f"{' '.join(self.prefix)}). Check the name with `podman ps -a`.",
                )
            raise RuntimeCommandError(f"Cannot inspect container {container!r}.", argv=argv, stderr=proc.stderr)
        data = json.loads(proc.stdout)[0]
        return ContainerInfo(
            id=data["Id"],
            name=data["Name"].lstrip("/"),
            state=data["State"]["Status"],
            pid=int(data["State"].get("Pid") or 0),
            image_id=data.get("Image", ""),
            image_name=data.get("ImageName", ""),
            static_dir=data.get("StaticDir", ""),
            checkpointed=bool(data["State"].get("Checkpointed")),
            mounts=tuple(
                Mount(
                    str(m.get("Type", "")),
                    str(m.get("Source", "")),
                    str(m.get("Destination", "")),
                    str(m.get("Name", "")),
                )
                for m in data.get("Mounts") or ()
            ),
        )

    def running_containers(self, label: str | None = None) -> list[str]:
        """Names of running containers, optionally only those with a label (``k`` or ``k=v``)."""
        args = ["container", "ps", "--format", "json"]
        if label:
            args += ["--filter", f"label={label}"]
        data = self._json(args, what="list running containers") or []
        return sorted(str((c.get("Names") or [""])[0]) for c in data)

    def exists(self, container: str) -> bool:
        argv = [*self.prefix, "container", "exists", container]
        return subprocess.run(argv, capture_output=True, check=False, timeout=120).returncode == 0

    def diff(self, container: str) -> Changes:
        data = (
            self._json(
                ["container", "diff", "--format", "json", container],
                what=f"list root file-system changes of {container!r}",
            )
            or {}
        )
        return Changes(
            added=tuple(data.get("added") or ()),
            changed=tuple(data.get("changed") or ()),
            deleted=tuple(data.get("deleted") or ()),
        )

    @contextlib.contextmanager
    def mounted(self, container: str) -> Iterator[Path]:
        """The container's merged root file-system, mounted for the duration."""
        out = self._run(["container", "mount", container], what=f"mount the root of {container!r}")
        try:
            yield Path(out.stdout.strip())
        finally:
            with contextlib.suppress(RuntimeCommandError):
                self._run(["container", "unmount", container], what=f"unmount {container!r}")

    @contextlib.contextmanager
    def image_mounted(self, image: str) -> Iterator[Path]:
        out = self._run(["image", "mount", image], what=f"mount image {image}")
        try:
            yield Path(out.stdout.strip())
        finally:
            with contextlib.suppress(RuntimeCommandError):
                self._run(["image", "unmount", image], what=f"unmount image {image}")

    def image_exists(self, image: str) -> bool:
        argv = [*self.prefix, "image", "exists", image]
        return subprocess.run(argv, capture_output=True, check=False, timeout=120).returncode == 0

    def save_image(self, image: str, dest: Path) -> None:
        """``podman save`` as an OCI archive: loading it elsewhere keeps the same image id."""
        self._run(["image", "save", "--format", "oci-archive", "-o", str(dest), image], what=f"save image {image}")

    def load_image(self, archive: Path) -> None:
        self._run(["image", "load", "-i", str(archive)], what=f"load the image from {archive.name}")

    def tag_image(self, image: str, name: str) -> None:
        self._run(["image", "tag", image, name], what=f"tag image {image[:12]} as {name}")

    def volume_exists(self, name: str) -> bool:
        argv = [*self.prefix, "volume", "exists", name]
        return subprocess.run(argv, capture_output=True, check=False, timeout=120).returncode == 0

    def remove(self, container: str, *, force: bool = False) -> None:
        args = ["container", "rm", *(["--force"] if force else []), container]
        self._run(args, what=f"remove container {container!r}")

    # -- freezing ---------------------------------------------------------------------------

    def freezer(self, info: ContainerInfo) -> Path:
        """The cgroup file that freezes the container (v1 freezer.state or v2 cgroup.freeze)."""
        try:
            lines = Path(f"/proc/{info.pid}/cgroup").read_text().splitlines()
        except OSError as exc:
            raise ContainerStateError(
                f"Container {info.name!r} has no running process to freeze (state {info.state})."
            ) from exc
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "freezer" in controllers.split(","):
                return CGROUP_ROOT / "freezer" / path.lstrip("/") / "freezer.state"
        for line in lines:
            if line.startswith("0::"):
                return CGROUP_ROOT / line[3:].lstrip("/") / "cgroup.freeze"
        raise ContainerStateError(f"Cannot find the freezer cgroup of container {info.name!r}.")

    def freeze(self, info: ContainerInfo, timeout: float = 30) -> Path:
        """Freeze every process of the container without telling Podman (which would then
        refuse to checkpoint a 'paused' container). CRIU accepts a frozen cgroup and keeps it
        frozen, so the root file-system and the memory are captured at the same instant."""
        knob = self.freezer(info)
        v1 = knob.name == "freezer.state"
        knob.write_text("FROZEN" if v1 else "1")
        deadline = time.monotonic() + timeout
        while not _is_frozen(knob):
            if time.monotonic() > deadline:
                self.thaw(knob)
                raise ContainerStateError(f"Container {info.name!r} did not freeze within {timeout} s.")
            time.sleep(0.005)
        return knob

    @staticmethod
    def thaw(knob: Path) -> None:
        """Thaw a cgroup frozen by :meth:`freeze`; a cgroup gone (container stopped) is fine."""
        with contextlib.suppress(FileNotFoundError):
            knob.write_text("THAWED" if knob.name == "freezer.state" else "0")

    # -- checkpoint / restore ---------------------------------------------------------------

    def checkpoint(
        self, info: ContainerInfo, export: Path, *, leave_running: bool, options: DumpOptions | None = None
    ) -> CheckpointStats:
        """CRIU dump through Podman into an uncompressed Podman-layout tar, without rootfs.

        Stop mode keeps the checkpoint files next to the container, so a failed migration can
        restore it right here (`podman container restore`). Named volumes are exported with it
        (``volumes/<name>.tar``)."""
        options = options or DumpOptions()
        args = [
            "container",
            "checkpoint",
            "--export",
            str(export),
            "--compress",
            "none",
            "--ignore-rootfs",
            "--print-stats",
        ]
        args += ["--leave-running"] if leave_running else ["--keep"]
        args += options.podman_args()
        proc = self._run(
            [*args, info.id],
            what=f"checkpoint container {info.name!r}",
            error=CheckpointError,
            log_hint=Path(info.static_dir) / "dump.log",
        )
        return _stats(proc.stdout, "runtime_checkpoint_duration", "podman_checkpoint_duration")

    def restore_import(
        self,
        archive: Path,
        *,
        name: str | None,
        options: RestoreOptions | None = None,
        timeout: float = DEFAULT_RESTORE_TIMEOUT_S,
        target: str = "",
    ) -> tuple[str, CheckpointStats]:
        """``podman container restore --import``. If it fails or does not finish within ``timeout``
        seconds, whatever it left is removed before :class:`RestoreError` is raised: the
        container it created (``target`` is the name it restores under) and every process in
        that container's cgroup, also one a hung CRIU left running outside Podman's knowledge."""
        options = options or RestoreOptions()
        args = ["container", "restore", "--import", str(archive), "--print-stats", *options.podman_args()]
        if name:
            args += ["--name", name]
        label = f"container {name or target!r}" if name or target else "the container"
        what = f"restore {label} from {archive.name}"
        argv = [*self.prefix, *args]
        watcher = _NewContainers(self._container_dirs())
        with watcher:
            returncode, stdout, stderr, timed_out = _run_bounded(argv, timeout, what)
        if returncode == 0 and not timed_out:
            stats = _stats(stdout, "runtime_restore_duration", "podman_restore_duration")
            ids = [c.get("Id", "") for c in stats.raw.get("container_statistics") or []]
            return (ids[0] if ids else ""), stats
        log = _LOG_FILE_RE.search(stderr)
        created = set(watcher.new) | set(_IDS_IN_PATH.findall(log.group(1) if log else ""))
        if target:
            with contextlib.suppress(RuntimeCommandError, KeyError, ValueError, json.JSONDecodeError):
                created.add(self.inspect(target).id)
        log_text = _read_log(log.group(1)) if log else ""  # before the cleanup removes the log
        log_tail = _log_excerpt(log_text)
        cleaned = self.clean_failed_restore(created - watcher.before, target)
        head = f"Cannot {what}: podman did not finish within {timeout:g} s." if timed_out else f"Cannot {what}."
        raise RestoreError(
            "\n".join([head, *_restore_hints(stderr + log_text), cleaned]),
            argv=argv,
            stderr=stderr,
            log_tail=log_tail,
        )

    def clean_failed_restore(self, container_ids: set[str], target: str = "") -> str:
        """Kill every process of these (just created) containers and remove them; say what was done."""
        killed: set[int] = set()
        for cid in sorted(container_ids):
            killed |= cgroups.kill_all(cgroups.container_cgroups(cid))
            # Its conmon and runc end once CRIU is gone; if they do not, they go too.
            deadline = time.monotonic() + 10
            while (left := cgroups.processes_naming(cid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed |= left
        removed: list[str] = []
        problems: list[str] = []
        for ref in [*([target] if target else []), *sorted(container_ids)]:
            for _ in range(3):
                if not self.exists(ref):
                    break
                with contextlib.suppress(RuntimeCommandError):
                    self._run(["container", "rm", "--force", "--time", "0", ref], what=f"remove container {ref!r}")
                if not self.exists(ref):
                    removed.append(repr(ref) if ref == target else f"id {ref[:12]}")
                    break
                time.sleep(1)
            else:
                problems.append(ref)
        if problems:
            return (
                f"ferry could not remove what the failed restore left: {', '.join(problems)}; remove it with "
                f"`podman rm -f {' '.join(problems)}`."
            )
        done = []
        if removed:
            done.append(f"removed the container it had created ({', '.join(removed)})")
        if killed:
            done.append(f"killed {len(killed)} process(es) it had left running")
        if not done:
            return "It left no container and no process behind."
        return "ferry " + " and ".join(done) + ": nothing of it is left on this host."

    def _container_dirs(self) -> list[Path]:
        """This store's per-container directories (graph root and run root)."""
        try:
            store = self._json(["info", "--format", "json"], what="read podman info").get("store", {})
        except RuntimeCommandError:
            return []
        driver = str(store.get("graphDriverName") or "overlay")
        roots = [store.get("graphRoot"), store.get("runRoot")]
        return [Path(str(r)) / f"{driver}-containers" for r in roots if r]

    def restore_local(self, container: str) -> None:
        """Restore a container from the checkpoint Podman kept next to it (rollback).

        Back on its own host the container keeps its connections and file locks."""
        self._run(
            ["container", "restore", "--keep", "--tcp-established", "--file-locks", container],
            what=f"restore container {container!r} from its local checkpoint",
            error=RestoreError,
        )

    # -- this host's own settings (what a restore is rebuilt for) -----------------------------

    def store_info(self) -> tuple[str, str, str]:
        """(volume path, cgroup manager, OCI runtime name) of this host's Podman."""
        info = self._json(["info", "--format", "json"], what="read podman info")
        store, host = info.get("store") or {}, info.get("host") or {}
        runtime = (host.get("ociRuntime") or {}).get("name") or ""
        return str(store.get("volumePath") or ""), str(host.get("cgroupManager") or ""), str(runtime)

    def reference_spec(self, workdir: Path) -> dict[str, Any]:
        """The OCI spec this host's Podman generates for a plain container: its default
        capabilities, seccomp and AppArmor profiles, masked paths and device rules. A throwaway
        container on an empty root file-system (one empty executable) is created and initialised,
        never started, and removed again."""
        root = workdir / "reference-root"
        root.mkdir(parents=True, exist_ok=True)
        (root / "x").touch(mode=0o755)
        name = f"ferry-reference-{os.urandom(6).hex()}"
        # Small limits within any host's hard limits (runc refuses to raise one); unused anyway.
        limits = [f"{kind}={_small_limit(rl)}:{_small_limit(rl)}" for kind, rl in _REFERENCE_LIMITS]
        what = "learn this host's default container settings (a throwaway reference container)"
        try:
            self._run(
                [
                    "container",
                    "create",
                    "--name",
                    name,
                    "--network",
                    "none",
                    "--ulimit",
                    limits[0],
                    "--ulimit",
                    limits[1],
                    "--rootfs",  # a flag: the first argument is then the root directory, not an image
                    str(root),
                    "/x",
                ],
                what=what,
                error=RestoreError,
            )
            self._run(["container", "init", name], what=what, error=RestoreError)
            path = self._run(
                ["container", "inspect", "--format", "{{.OCIConfigPath}}", name], what=what, error=RestoreError
            ).stdout.strip()
            try:
                spec = json.loads(Path(path).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise RestoreError(f"Cannot {what}: cannot read {path}: {exc}.") from exc
        finally:
            with contextlib.suppress(RuntimeCommandError):
                self._run(["container", "rm", "--force", name], what=f"remove the reference container {name}")
        if not isinstance(spec, dict):
            raise RestoreError(f"Cannot {what}: {path} holds no OCI spec.")
        return spec

    # -- versions / health ------------------------------------------------------------------

    def source(self) -> Source:
        info = self._json(["info", "--format", "json"], what="read podman info")
        host = info.get("host", {})
        runtime = host.get("ociRuntime", {})
        runtime_version = (runtime.get("version") or "").splitlines()[:1]
        return Source(
            host=platform.node(),
            kernel=platform.release(),
            criu=criu_version(),
            podman=str(info.get("version", {}).get("Version", "")),
            runtime=" ".join([runtime.get("name", ""), *runtime_version]).strip(),
        )


_REFERENCE_LIMITS = (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC))


def _small_limit(kind: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)


_IDS_IN_PATH = re.compile(r"/([0-9a-f]{64})/")
LOG_READ_LIMIT = 4 << 20


def _read_log(path: str) -> str:
    try:
        with Path(path).open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_READ_LIMIT))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _log_excerpt(text: str) -> str:
    """CRIU's first error lines (the cause is usually the first), then the log's last lines."""
    lines = text.splitlines()
    last = lines[-LOG_TAIL_LINES:]
    errors = [line for line in lines if "Error (" in line and line not in last][:8]
    return "\n".join([*errors, *(["..."] if errors else []), *last])


def _restore_hints(text: str) -> list[str]:
    hints = []
    if "Connected TCP socket in image" in text:
        hints.append(
            "The archive holds established TCP connections and this restore asked neither to keep them nor to "
            "close them: restore with --tcp-close (ferry restore's default) or --tcp-established."
        )
    if "volume with name" in text and "already exists" in text:
        hints.append(
            "A named volume of the archive already exists on this host; Podman restores volumes only into new "
            "ones. Remove it (`podman volume rm NAME`) or restore on another host."
        )
    return hints


def _run_bounded(argv: list[str], timeout: float, what: str) -> tuple[int, str, str, bool]:
    """Run a podman command in its own session; kill that session when it overruns ``timeout``."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    except FileNotFoundError as exc:
        raise RuntimeCommandError(
            f"Cannot {what}: {argv[0]!r} is not installed or not on PATH. Install podman "
            "(apt-get install podman runc) or set FERRY_PODMAN to the podman command to use.",
            argv=argv,
        ) from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stdout, stderr, False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a daemonised child still holds the pipes
            proc.kill()
            stdout, stderr = "", ""
        return proc.returncode or -9, stdout or "", stderr or "", True


class _NewContainers:
    """Watches a store's container directories while a command runs, to learn which containers it
    created even if it removes (forgets) them again before it fails."""

    def __init__(self, dirs: list[Path], interval: float = 0.1) -> None:
        self._dirs = dirs
        self._interval = interval
        self.before: set[str] = set()
        self.new: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _list(self) -> set[str]:
        found: set[str] = set()
        for d in self._dirs:
            with contextlib.suppress(OSError):
                found.update(p.name for p in d.iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name))
        return found

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self.new |= self._list() - self.before

    def __enter__(self) -> _NewContainers:
        self.before = self._list()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.new |= self._list() - self.before


def _is_frozen(knob: Path) -> bool:
    if knob.name == "freezer.state":
        return knob.read_text().strip() == "FROZEN"
    return "frozen 1" in (knob.parent / "cgroup.events").read_text()


def _stats(stdout: str, runtime_key: str, total_key: str) -> CheckpointStats:
    try:
        raw = json.loads(stdout)
    except json.JSONDecodeError:
        return CheckpointStats()
    ctrs = raw.get("container_statistics") or [{}]
    criu = ctrs[0].get("criu_statistics") or {}
    return CheckpointStats(
        frozen_us=int(criu.get("frozen_time", 0)),
        runtime_us=int(ctrs[0].get(runtime_key, 0)),
        total_us=int(raw.get(total_key, 0)),
        raw=raw,
    )


def criu_check() -> tuple[bool, str]:
    """Run ``criu check``; returns (passed, what it printed)."""
    try:
        proc = subprocess.run(["criu", "check"], capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return False, "criu is not installed or not on PATH"
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def criu_version() -> str:
    try:
        proc = subprocess.run(["criu", "--version"], capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return ""
    match = re.search(r"Version:\s*(\S+)", proc.stdout)
    return match.group(1) if match else ""


def run_tool(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run a host tool for a health check (``ferry doctor``): (exit status, stdout+stderr).
    A missing program is status 127 and a timeout 124; neither raises."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        return 127, str(exc)
    except subprocess.TimeoutExpired:
        return 124, f"`{' '.join(argv)}` did not finish within {timeout} s"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def criu_feature(feature: str) -> tuple[bool, str]:
    """``criu check --feature FEATURE`` (e.g. mem_dirty_track); returns (present, output)."""
    code, out = run_tool(["criu", "check", "--feature", feature])
    return code == 0, out


PROBE_TIMEOUT = 180


def criu_probe(user: str = "root", criu: str = "criu") -> _probe.ProbeResult:
    """Really dump and restore a throwaway process (listening socket, established connection,
    file lock) run as ``user`` with ``criu``: ferry/criu_probe.py, the same program
    scripts/provision-criu runs, started here as a subprocess of this interpreter."""
    argv = [sys.executable, _probe.__file__, "--json", "--criu", criu, "--user", user]
    code, out = run_tool(argv, timeout=PROBE_TIMEOUT)
    try:
        line = next(line for line in reversed(out.splitlines()) if line.startswith("{"))
        return _probe.ProbeResult(**json.loads(line))
    except (StopIteration, json.JSONDecodeError, TypeError) as exc:
        return _probe.ProbeResult(
            ok=False,
            stage="start",
            criu=criu,
            user=user,
            detail=f"the probe printed no result ({exc})",
            errors=out.splitlines()[-6:] or [f"exit status {code}"],
        )


# -- CRIU image tools (ferry inspect) -------------------------------------------------------------

CRIT = "crit"
TOOL_TIMEOUT = 60


def crit_decode(path: Path) -> dict[str, Any]:
    """Decode one CRIU image with ``crit decode -i FILE``; returns crit's JSON."""
    argv = [CRIT, "decode", "-i", str(path)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise RuntimeCommandError(
            "Cannot decode the CRIU images: crit is not installed or not on PATH. Install Debian's "
            "criu package (apt-get install criu), which ships /usr/bin/crit.",
            argv=argv,
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise RuntimeCommandError(f"crit did not decode {path.name} within {TOOL_TIMEOUT} s.", argv=argv) from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UnsupportedArchiveError(f"crit cannot decode {path.name}: {last}")
    try:
        value = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise UnsupportedArchiveError(f"crit printed no JSON for {path.name}.") from exc
    if not isinstance(value, dict):
        raise UnsupportedArchiveError(f"crit printed unexpected JSON for {path.name}.")
    return value


def cpuinfo_check(folder: Path) -> tuple[bool, str]:
    """``criu cpuinfo check -D FOLDER``: can this CPU run what was dumped on the source CPU?"""
    argv = ["criu", "cpuinfo", "check", "-D", str(folder)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
    except FileNotFoundError:
        return False, "criu is not installed or not on PATH"
    except subprocess.TimeoutExpired:
        return False, f"`criu cpuinfo check` did not finish within {TOOL_TIMEOUT} s"
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0:
        return True, "`criu cpuinfo check` passes: this CPU has the features the dump relies on"
    return False, f"`criu cpuinfo check` fails: {out[-500:] or f'exit status {proc.returncode}'}"

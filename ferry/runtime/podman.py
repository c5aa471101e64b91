"""Podman (with runc and CRIU underneath), driven through its CLI: the real :class:`Runtime`.

Every command goes through :meth:`Podman._run` (and so :func:`ferry.runtime.process.run`); a
failure becomes a :mod:`ferry.errors` exception naming the container, the command, what it
printed and the tail of CRIU's log when there is one."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ferry.archive.manifest import Source
from ferry.errors import (
    CheckpointError,
    ContainerNotFoundError,
    RestoreError,
    RuntimeCommandError,
)
from ferry.options import DEFAULT_RESTORE_TIMEOUT_S, DumpOptions, RestoreOptions
from ferry.runtime import freezer, tools
from ferry.runtime.export_fifo import PodmanExport
from ferry.runtime.host_settings import HostSettings
from ferry.runtime.model import Changes, CheckpointStats, ContainerInfo, Mount, stats_of
from ferry.runtime.process import Completed, run, start, tail
from ferry.runtime.restore_failure import IDS_IN_PATH, NewContainers, clean, log_excerpt, read_log, restore_hints

_LOG_FILE_RE = re.compile(r"log file: ([^\s\"\\]+)")
INSTALL = "Install podman (apt-get install podman runc) or set FERRY_PODMAN to the podman command to use."


def _checkpoint_stats(stdout: str) -> CheckpointStats:
    return stats_of(stdout, "runtime_checkpoint_duration", "podman_checkpoint_duration")


def podman_prefix() -> list[str]:
    """The podman command line prefix: ``FERRY_PODMAN`` (e.g. with --root/--runroot) or podman."""
    return shlex.split(os.environ.get("FERRY_PODMAN", "podman")) or ["podman"]


class Podman(HostSettings):
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
        check: bool = True,
        own_session: bool = False,
    ) -> Completed:
        """Run ``podman ARGS``. With ``check`` (the default) a non-zero exit status or a timeout
        raises ``error``; without, the caller reads the outcome. A missing podman always raises."""
        argv = [*self.prefix, *args]
        proc = run(argv, timeout=timeout, what=what, install=INSTALL, own_session=own_session)
        if not check:
            return proc
        if proc.timed_out:
            raise error(f"Cannot {what}: podman did not finish within {timeout} s.", argv=argv)
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

    def _status(self, args: list[str], *, what: str) -> bool:
        """A yes/no podman command (``exists``): exit status 0 or 1; anything else is an error."""
        proc = self._run(args, what=what, timeout=120, check=False)
        if proc.timed_out or proc.returncode not in (0, 1):
            raise RuntimeCommandError(f"Cannot {what}.", argv=proc.argv, stderr=proc.stderr)
        return proc.returncode == 0

    # -- containers -------------------------------------------------------------------------

    def inspect(self, container: str) -> ContainerInfo:
        what = f"inspect container {container!r}"
        proc = self._run(["container", "inspect", container], what=what, timeout=120, check=False)
        if proc.returncode != 0 and "no such container" in proc.stderr.lower():
            raise ContainerNotFoundError(
                f"There is no container {container!r} on this host (podman: "
                f"{' '.join(self.prefix)}). Check the name with `podman ps -a`.",
            )
        if proc.timed_out or proc.returncode != 0:
            raise RuntimeCommandError(f"Cannot {what}.", argv=proc.argv, stderr=proc.stderr)
        try:
            found = json.loads(proc.stdout)
            data = found[0]
        except (json.JSONDecodeError, IndexError, KeyError, TypeError) as exc:
            raise RuntimeCommandError(
                f"Cannot {what}: podman printed no container.", stderr=proc.stdout[-500:]
            ) from exc
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
        return self._status(["container", "exists", container], what=f"check whether {container!r} exists")

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
        return self._status(["image", "exists", image], what=f"check whether {image!r} exists")

    def save_image(self, image: str, dest: Path) -> None:
        """``podman save`` as an OCI archive: loading it elsewhere keeps the same image id."""
        self._run(["image", "save", "--format", "oci-archive", "-o", str(dest), image], what=f"save image {image}")

    def load_image(self, archive: Path) -> None:
        self._run(["image", "load", "-i", str(archive)], what=f"load the image from {archive.name}")

    def tag_image(self, image: str, name: str) -> None:
        self._run(["image", "tag", image, name], what=f"tag image {image[:12]} as {name}")

    def volume_exists(self, name: str) -> bool:
        return self._status(["volume", "exists", name], what=f"check whether {name!r} exists")

    def remove(self, container: str, *, force: bool = False) -> None:
        args = ["container", "rm", *(["--force"] if force else []), container]
        self._run(args, what=f"remove container {container!r}")

    # -- freezing ---------------------------------------------------------------------------

    def freeze(self, info: ContainerInfo, timeout: float = 30) -> Path:
        """Freeze the container's cgroup (see :func:`ferry.runtime.freezer.freeze`)."""
        return freezer.freeze(info, timeout)

    def thaw(self, knob: Path) -> None:
        freezer.thaw(knob)

    # -- checkpoint / restore ---------------------------------------------------------------

    def _checkpoint_args(self, export: Path, leave_running: bool, options: DumpOptions | None) -> list[str]:
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
        return args + options.podman_args()

    @contextlib.contextmanager
    def checkpoint_stream(
        self,
        info: ContainerInfo,
        fifo: Path,
        *,
        leave_running: bool,
        options: DumpOptions | None = None,
        timeout: float = 600,
        while_dumping: Callable[[], None] | None = None,
    ) -> Iterator[PodmanExport]:
        """CRIU dump through Podman into an uncompressed Podman-layout tar, without rootfs, read
        from a FIFO while Podman writes it.

        Stop mode keeps the checkpoint files next to the container, so a failed migration can
        restore it right here (`podman container restore`). Named volumes are exported with it
        (``volumes/<name>.tar``).

        ``while_dumping`` is called once Podman is started, before the wait for its export: work
        to overlap with CRIU's dump. Yields once Podman has opened the FIFO (CRIU's dump is done
        then; ``timeout`` bounds the wait); the caller reads the export to its end and calls
        ``finish()``. Leaving the block early lets Podman finish into nothing (see
        :mod:`ferry.runtime.export_fifo`). The FIFO is removed in every case."""
        what = f"checkpoint container {info.name!r}"
        argv = [*self.prefix, *self._checkpoint_args(fifo, leave_running, options), info.id]
        log_hint = Path(info.static_dir) / "dump.log"

        def failed(done: Completed, why: str) -> CheckpointError:
            log = _LOG_FILE_RE.search(done.stderr)
            head = f"Cannot {what}."
            if why:
                head = f"Cannot {what}: {why}."
            elif done.timed_out:
                head = f"Cannot {what}: podman did not finish."
            elif done.returncode < 0:
                head = f"Cannot {what}: podman was killed (signal {-done.returncode})."
            return CheckpointError(
                head, argv=argv, stderr=done.stderr, log_tail=tail(log.group(1) if log else log_hint)
            )

        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo, 0o600)
        try:
            export = PodmanExport(
                start(argv, what=what, install=INSTALL), fifo, what=what, failed=failed, stats=_checkpoint_stats
            )
            try:
                if while_dumping is not None:
                    while_dumping()
                export.open(timeout)
                yield export
            finally:
                export.abandon()
        finally:
            fifo.unlink(missing_ok=True)

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
        watcher = NewContainers(self._container_dirs())
        with watcher:
            proc = self._run(args, what=what, timeout=timeout, check=False, own_session=True)
        argv, stdout, stderr, timed_out = proc.argv, proc.stdout, proc.stderr, proc.timed_out
        if proc.returncode == 0 and not timed_out:
            stats = stats_of(stdout, "runtime_restore_duration", "podman_restore_duration")
            ids = [c.get("Id", "") for c in stats.raw.get("container_statistics") or []]
            return (ids[0] if ids else ""), stats
        log = _LOG_FILE_RE.search(stderr)
        created = set(watcher.new) | set(IDS_IN_PATH.findall(log.group(1) if log else ""))
        if target:
            with contextlib.suppress(RuntimeCommandError, KeyError, ValueError, json.JSONDecodeError):
                created.add(self.inspect(target).id)
        log_text = read_log(log.group(1)) if log else ""  # before the cleanup removes the log
        log_tail = log_excerpt(log_text)
        cleaned = self.clean_failed_restore(created - watcher.before, target)
        head = f"Cannot {what}: podman did not finish within {timeout:g} s." if timed_out else f"Cannot {what}."
        raise RestoreError(
            "\n".join([head, *restore_hints(stderr + log_text), cleaned]),
            argv=argv,
            stderr=stderr,
            log_tail=log_tail,
        )

    def clean_failed_restore(self, container_ids: set[str], target: str = "") -> str:
        """Kill every process of these (just created) containers and remove them; say what was done."""

        def remove(ref: str) -> None:
            self._run(["container", "rm", "--force", "--time", "0", ref], what=f"remove container {ref!r}")

        return clean(container_ids, target, gone=self._gone, remove=remove)

    def _gone(self, ref: str) -> bool:
        """Whether podman says the container is gone; a podman that cannot tell means not gone."""
        try:
            return not self.exists(ref)
        except RuntimeCommandError:
            return False

    def _container_dirs(self) -> list[Path]:
        """This store's per-container directories (graph root and run root)."""
        try:
            store = self.host_info().get("store", {})
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

    # -- CRIU and crit (host tools) ---------------------------------------------------------

    def criu_version(self) -> str:
        return tools.criu_version()

    def criu_check(self) -> tuple[bool, str]:
        return tools.criu_check()

    def cpuinfo_check(self, folder: Path) -> tuple[bool, str]:
        return tools.cpuinfo_check(folder)

    def crit_decode(self, path: Path) -> dict[str, Any]:
        return tools.crit_decode(path)

    # -- versions / health ------------------------------------------------------------------

    def source(self) -> Source:
        info = self.host_info()
        host = info.get("host", {})
        runtime = host.get("ociRuntime", {})
        runtime_version = (runtime.get("version") or "").splitlines()[:1]
        return Source(
            host=platform.node(),
            kernel=platform.release(),
            criu=tools.criu_version(),
            podman=str(info.get("version", {}).get("Version", "")),
            runtime=" ".join([runtime.get("name", ""), *runtime_version]).strip(),
        )

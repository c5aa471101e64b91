"""What this host's Podman is set up to do, as the spec rebuild needs it: ``podman info`` (the
volume path, cgroup manager, OCI runtime) and the OCI spec Podman generates for a plain container
(default capabilities, seccomp and AppArmor profiles, masked paths, device rules), both cached on
disk (:mod:`ferry.runtime.host_cache`). A part of :class:`ferry.runtime.podman.Podman`."""

from __future__ import annotations

import contextlib
import json
import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferry.errors import RestoreError, RuntimeCommandError
from ferry.runtime import host_cache

if TYPE_CHECKING:
    from ferry.runtime.process import Completed


class HostSettings:
    """This host's Podman configuration; mixed into :class:`~ferry.runtime.podman.Podman`, whose
    ``_run``/``_json`` it uses."""

    prefix: list[str]

    if TYPE_CHECKING:

        def _run(
            self, args: list[str], *, what: str, error: type[RuntimeCommandError] = RuntimeCommandError
        ) -> Completed: ...

        def _json(
            self, args: list[str], *, what: str, error: type[RuntimeCommandError] = RuntimeCommandError
        ) -> Any: ...

    def store_info(self) -> tuple[str, str, str]:
        """(volume path, cgroup manager, OCI runtime name) of this host's Podman."""
        info = self.host_info()
        store, host = info.get("store") or {}, info.get("host") or {}
        runtime = (host.get("ociRuntime") or {}).get("name") or ""
        return str(store.get("volumePath") or ""), str(host.get("cgroupManager") or ""), str(runtime)

    def host_info(self) -> dict[str, Any]:
        """The parts of ``podman info`` that describe this Podman's configuration (version, OCI
        runtime, cgroup manager, store paths), cached on disk until Podman or its configuration
        changes (:mod:`ferry.runtime.host_cache`); never the parts that change between calls."""
        value = host_cache.cached("podman-info", self.prefix, self._read_info)
        return value if isinstance(value, dict) else self._read_info()

    def _read_info(self) -> dict[str, Any]:
        info = self._json(["info", "--format", "json"], what="read podman info")
        if not isinstance(info, dict):
            raise RuntimeCommandError("Cannot read podman info: podman printed no JSON object.")
        host, store = info.get("host") or {}, info.get("store") or {}
        return {
            "version": info.get("version") or {},
            "host": {k: host.get(k) for k in ("ociRuntime", "cgroupManager", "cgroupVersion")},
            "store": {k: store.get(k) for k in ("graphDriverName", "graphRoot", "runRoot", "volumePath")},
        }

    def reference_spec(self, workdir: Path) -> dict[str, Any]:
        """The OCI spec this host's Podman generates for a plain container: its default
        capabilities, seccomp and AppArmor profiles, masked paths and device rules; only these
        host defaults are kept (see :data:`REFERENCE_KEYS`), never what differs per container
        (its hostname, ids, mounts). Learnt once per Podman configuration (cached on disk,
        :mod:`ferry.runtime.host_cache`)."""
        spec = host_cache.cached("reference-spec", self.prefix, lambda: host_defaults(self._reference_spec(workdir)))
        return spec if isinstance(spec, dict) else host_defaults(self._reference_spec(workdir))

    def _reference_spec(self, workdir: Path) -> dict[str, Any]:
        """A throwaway container on an empty root file-system (one empty executable) is created
        and initialised, never started, and removed again; its OCI spec is the answer."""
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


#: The parts of the reference container's OCI spec that are this host's defaults (what
#: ferry.archive.rebuild_context.Defaults reads): section -> keys (a dotted key descends).
REFERENCE_KEYS = {
    "process": ("capabilities", "apparmorProfile", "selinuxLabel"),
    "linux": ("maskedPaths", "readonlyPaths", "resources.devices", "seccomp", "mountLabel"),
}


def host_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """The host-default parts of an OCI spec (:data:`REFERENCE_KEYS`), nothing per container."""
    out: dict[str, Any] = {}
    for section, keys in REFERENCE_KEYS.items():
        src = spec.get(section)
        if not isinstance(src, dict):
            continue
        dst = out.setdefault(section, {})
        for key in keys:
            first, _, rest = key.partition(".")
            value = src.get(first)
            if rest:
                value = value.get(rest) if isinstance(value, dict) else None
                if value is not None:
                    dst.setdefault(first, {})[rest] = value
            elif value is not None:
                dst[first] = value
    return out


_REFERENCE_LIMITS = (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC))


def _small_limit(kind: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)

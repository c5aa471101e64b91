"""Whether this host could restore an inspected archive: CRIU, CPU, image, container name.

Each check is ``{"ok": True | False | None, "detail": ...}``; None means it could not be asked.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from typing import Any

from ferry.inspection.scanner import Scan
from ferry.runtime import Podman, cpuinfo_check, criu_check, criu_version

_NO_CPUINFO = "no cpuinfo image in the archive; not checked"


def cpu_compat(scan: Scan) -> dict[str, Any]:
    """Run while the scan's work directory (holding cpuinfo.img) still exists."""
    path = scan.images.get("cpuinfo.img")
    if path is None:
        return {"ok": None, "detail": _NO_CPUINFO}
    ok, detail = cpuinfo_check(path.parent)
    return {"ok": ok, "detail": detail}


def compatibility(data: dict[str, Any], cpu: dict[str, Any], runtime: Podman) -> dict[str, dict[str, Any]]:
    return {
        "criu": _criu_compat(data["source"]["criu"]),
        "cpu": cpu,
        "image": _image_compat(data["image"], runtime),
        "name": _name_compat(data["container"]["name"], runtime),
    }


def _criu_compat(source_criu: str) -> dict[str, Any]:
    ok, out = criu_check()
    version = criu_version() or "?"
    dumped = f" (the archive was dumped by CRIU {source_criu})" if source_criu else ""
    if ok:
        return {"ok": True, "detail": f"criu {version} passes `criu check`{dumped}"}
    return {"ok": False, "detail": f"criu {version} fails `criu check`{dumped}: {out[-500:]}"}


def _image_compat(image: dict[str, str], runtime: Podman) -> dict[str, Any]:
    ref = image["id"] or image["name"]
    if not ref:
        return {"ok": None, "detail": "the archive names no image; not checked"}
    present = _ask(lambda: runtime.image_exists(ref))
    if present is None:
        return {"ok": None, "detail": f"cannot ask podman whether image {ref} is present"}
    if present:
        return {"ok": True, "detail": f"image {_short(ref)} is present"}
    return {
        "ok": False,
        "detail": f"image {_short(ref)} ({image['name'] or 'no name'}) is not on this host: pull or load it first",
    }


def _name_compat(name: str, runtime: Podman) -> dict[str, Any]:
    if not name:
        return {"ok": None, "detail": "the archive names no container; not checked"}
    taken = _ask(lambda: runtime.exists(name))
    if taken is None:
        return {"ok": None, "detail": f"cannot ask podman whether a container {name!r} exists"}
    if taken:
        return {"ok": False, "detail": f"a container named {name!r} exists here: restore with --name, or remove it"}
    return {"ok": True, "detail": f"no container named {name!r} here"}


def _ask(question: Callable[[], bool]) -> bool | None:
    """A podman yes/no question; None when podman cannot be run at all."""
    try:
        return question()
    except (OSError, subprocess.SubprocessError):
        return None


def _short(ref: str) -> str:
    return ref[:12] if re.fullmatch(r"[0-9a-f]{64}", ref) else ref

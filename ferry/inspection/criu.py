"""What the inspection shows from CRIU's images: the process tree and the dump statistics.

The images are decoded by ``crit`` through :mod:`ferry.runtime`. Whatever cannot be decoded
becomes a note on the scan, never an error: the inspection of a suspicious archive goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferry.archive import members as m
from ferry.errors import FerryError, UnsupportedArchiveError
from ferry.inspection.scanner import MAX_DECODED_PROCESSES, Scan
from ferry.runtime import crit_decode


def processes(scan: Scan) -> list[dict[str, Any]]:
    """The process tree from pstree.img, each process named by the comm in its core image."""
    pstree = scan.images.get("pstree.img")
    if pstree is None:
        scan.notes.append("The archive has no checkpoint/pstree.img; the process tree cannot be shown.")
        return []
    try:
        tree = [_process(entry) for entry in _entries(pstree)]
    except (FerryError, LookupError, ValueError, TypeError) as exc:
        scan.notes.append(f"The process tree cannot be shown: {exc}")
        return []
    for index, proc in enumerate(tree):
        if index >= MAX_DECODED_PROCESSES:
            scan.notes.append(f"Only the first {MAX_DECODED_PROCESSES} processes are named.")
            break
        proc["comm"] = _comm(scan, proc["pid"])
    return tree


def dump_stats(scan: Scan) -> dict[str, int]:
    """CRIU's own dump statistics (stats-dump): how long the processes were frozen, pages written."""
    path = scan.images.get(m.STATS_DUMP)
    if path is None:
        return {}
    try:
        dump = _entries(path)[0]["dump"]
        return {str(k): int(v) for k, v in dict(dump).items()}
    except (FerryError, LookupError, TypeError, ValueError) as exc:
        scan.notes.append(f"Cannot read CRIU's dump statistics: {exc}")
        return {}


def _entries(path: Path) -> list[dict[str, Any]]:
    entries = crit_decode(path).get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise UnsupportedArchiveError(f"{path.name} decodes to no list of entries.")
    return entries


def _process(entry: dict[str, Any]) -> dict[str, Any]:
    threads = entry.get("threads") or []
    return {
        "pid": _int(entry["pid"]),
        "ppid": _int(entry.get("ppid", 0)),
        "pgid": _int(entry.get("pgid", 0)),
        "sid": _int(entry.get("sid", 0)),
        "threads": len(threads) if isinstance(threads, list) else 0,
        "comm": "",
    }


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _comm(scan: Scan, pid: int) -> str:
    core = scan.images.get(f"core-{pid}.img")
    if core is None:
        scan.notes.append(f"There is no core image for pid {pid}; its name is unknown.")
        return ""
    try:
        comm = _entries(core)[0]["tc"]["comm"]
    except (FerryError, LookupError, TypeError) as exc:
        scan.notes.append(f"Cannot read the name of pid {pid}: {exc}")
        return ""
    return str(comm)

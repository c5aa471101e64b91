"""The terminal view of ``ferry inspect``: :func:`ferry.inspection.inspect_archive`'s result as text."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

from ferry.humanize import size as human_size


def format_inspection(data: dict[str, Any]) -> str:
    """The terminal view of :func:`inspect_archive`'s result. Every string from the archive is
    escaped: a hostile process name must not move the operator's cursor or recolour the screen."""
    lines = [
        f"Archive:    {safe(data['url'])}",
        f"Verified:   {'yes' if data['verified'] else 'NO'}: {safe(data['verification'])}",
        f"Container:  {_name_id(data['container'])}",
        f"Image:      {_name_id(data['image'])}",
        f"Engine:     {_engine(data)}",
        f"Source:     {_source(data['source'])}",
        f"Created:    {safe(data['created'] or '?')} (mode {safe(data['mode'] or '?')})",
        f"Command:    {safe(shlex.join(data['command'])) if data['command'] else '?'}",
        f"Sizes:      {_sizes(data['sizes'], data['compression'])}",
    ]
    if data.get("dump_stats"):
        lines.append(f"Dump:       {_dump_line(data['dump_stats'])}")
    lines.append("Processes:")
    lines += ["  " + line for line in _tree(data["processes"])] or ["  (none decoded)"]
    lines.append("Restore on this host:")
    for what, check in data["compatibility"].items():
        lines.append(f"  {_mark(check['ok'])} {what}: {safe(check['detail'])}")
    if data["notes"]:
        lines.append("Notes:")
        lines += [f"  - {safe(note)}" for note in data["notes"]]
    return "\n".join(lines)


def safe(text: object) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _short(ref: str) -> str:
    return ref[:12] if re.fullmatch(r"[0-9a-f]{64}", ref) else ref


def _name_id(ref: dict[str, str]) -> str:
    return f"{safe(ref['name'] or '?')} ({safe(_short(ref['id']) or 'no id')})"


def _engine(data: dict[str, Any]) -> str:
    podman = data["source"]["podman"]
    criu = data["source"]["criu"]
    parts = [f"podman {podman}" if podman else "podman", f"runtime {data['runtime'] or '?'}"]
    if criu:
        parts.append(f"CRIU {criu}")
    return safe(", ".join(parts))


def _source(source: dict[str, str]) -> str:
    if not source["host"]:
        return "unknown (no ferry manifest)"
    return safe(f"host {source['host']}, kernel {source['kernel'] or '?'}")


def _sizes(sizes: dict[str, int], compression: str) -> str:
    return (
        f"archive {human_size(sizes['archive'])} ({compression}), {human_size(sizes['total'])} expanded; "
        f"memory pages {human_size(sizes['memory_pages'])}; rootfs diff {human_size(sizes['rootfs_diff'])} "
        f"({sizes['changed_files']} entries changed, {sizes['deleted_files']} deleted)"
    )


def _dump_line(stats: dict[str, int]) -> str:
    frozen = stats.get("frozen_time", 0) / 1000
    return f"processes frozen {frozen:.1f} ms, {stats.get('pages_written', 0)} pages written"


def _mark(ok: bool | None) -> str:
    return {True: "[ok]  ", False: "[FAIL]", None: "[?]   "}[ok]


def _tree(processes: list[dict[str, Any]]) -> list[str]:
    """Children under their parents; a hostile tree with cycles still prints each pid once."""
    by_pid = {p["pid"]: p for p in processes}
    children: dict[int, list[dict[str, Any]]] = {}
    for proc in processes:
        children.setdefault(proc["ppid"], []).append(proc)
    shown: set[int] = set()
    roots = [p for p in processes if p["ppid"] not in by_pid or p["ppid"] == p["pid"]]
    lines = list(_branch(roots, children, shown, 0))
    rest = [p for p in processes if p["pid"] not in shown]
    return lines + list(_branch(rest, children, shown, 0))


def _branch(
    procs: list[dict[str, Any]], children: dict[int, list[dict[str, Any]]], shown: set[int], depth: int
) -> Iterator[str]:
    for proc in procs:
        if proc["pid"] in shown:
            continue
        shown.add(proc["pid"])
        threads = f" ({proc['threads']} threads)" if proc["threads"] > 1 else ""
        yield f"{'  ' * depth}[{proc['pid']}] {safe(proc['comm'] or '?')}{threads}"
        yield from _branch(children.get(proc["pid"], []), children, shown, depth + 1)

"""CRIU and crit, run as host tools: ``criu check``/``--version``/``cpuinfo check``, ferry's own
CRIU probe, and ``crit decode`` of one CRIU image (``ferry inspect``). Every run goes through
:func:`ferry.runtime.process.run`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from ferry import criu_probe as _probe
from ferry.errors import RuntimeCommandError, UnsupportedArchiveError
from ferry.runtime.process import ProgramNotFoundError, run

CRIT = "crit"
TOOL_TIMEOUT = 60
PROBE_TIMEOUT = 180


def run_tool(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run a host tool for a health check (``ferry doctor``): (exit status, stdout+stderr).
    A missing program is status 127 and a timeout 124; neither raises."""
    try:
        done = run(argv, timeout=timeout, what=f"run {argv[0]}")
    except ProgramNotFoundError as exc:
        return 127, str(exc.__cause__ or exc)
    if done.timed_out:
        return 124, f"`{' '.join(argv)}` did not finish within {timeout} s"
    return done.returncode, done.output


def criu_check() -> tuple[bool, str]:
    """Run ``criu check``; returns (passed, what it printed)."""
    code, out = run_tool(["criu", "check"], timeout=60)
    if code == 127:
        return False, "criu is not installed or not on PATH"
    return code == 0, out


def criu_version() -> str:
    code, out = run_tool(["criu", "--version"], timeout=30)
    match = re.search(r"Version:\s*(\S+)", out) if code != 127 else None
    return match.group(1) if match else ""


def criu_feature(feature: str) -> tuple[bool, str]:
    """``criu check --feature FEATURE`` (e.g. mem_dirty_track); returns (present, output)."""
    code, out = run_tool(["criu", "check", "--feature", feature])
    return code == 0, out


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


def crit_decode(path: Path) -> dict[str, Any]:
    """Decode one CRIU image with ``crit decode -i FILE``; returns crit's JSON."""
    argv = [CRIT, "decode", "-i", str(path)]
    try:
        done = run(argv, timeout=TOOL_TIMEOUT, what="decode the CRIU images")
    except ProgramNotFoundError as exc:
        raise RuntimeCommandError(
            "Cannot decode the CRIU images: crit is not installed or not on PATH. Install Debian's "
            "criu package (apt-get install criu), which ships /usr/bin/crit.",
            argv=argv,
        ) from exc
    if done.timed_out:
        raise RuntimeCommandError(f"crit did not decode {path.name} within {TOOL_TIMEOUT} s.", argv=argv)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UnsupportedArchiveError(f"crit cannot decode {path.name}: {last}")
    try:
        value = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise UnsupportedArchiveError(f"crit printed no JSON for {path.name}.") from exc
    if not isinstance(value, dict):
        raise UnsupportedArchiveError(f"crit printed unexpected JSON for {path.name}.")
    return value


def cpuinfo_check(folder: Path) -> tuple[bool, str]:
    """``criu cpuinfo check -D FOLDER``: can this CPU run what was dumped on the source CPU?"""
    code, out = run_tool(["criu", "cpuinfo", "check", "-D", str(folder)], timeout=TOOL_TIMEOUT)
    if code == 127:
        return False, "criu is not installed or not on PATH"
    if code == 124:
        return False, f"`criu cpuinfo check` did not finish within {TOOL_TIMEOUT} s"
    if code == 0:
        return True, "`criu cpuinfo check` passes: this CPU has the features the dump relies on"
    return False, f"`criu cpuinfo check` fails: {out[-500:] or f'exit status {code}'}"

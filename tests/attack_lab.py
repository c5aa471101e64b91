"""The attacker's lab for tests/e2e/attacks/: two Podman stores on this machine, a
real snapshot to forge from, one way to restore, and a full account of what an attempt changed.

An attack is a real snapshot with one thing changed, re-sealed with a consistent manifest and
sidecar (see tests/archive_forge.py), restored through the ``ferry`` command on the *target* store
as root. :meth:`Attempt.refused` then checks everything issue 10 asks for and reports every harm
seen, not only the first: the command failed with a message naming the problem and no
traceback; the sentinel tree and the attack's own targets are unchanged byte for byte (mtimes
too) both after the restore and after the clean-up that a later ``podman rm`` would do; no
container, volume, mount or process is left; no marker file exists.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.archive_forge import Sealed, Unpacked, tree_state
from tests.helpers import Host

REPO = Path(__file__).resolve().parents[1]


class VfsHost(Host):
    """A store on the vfs driver: the container root is a plain directory on the same file
    system as the attack's targets, so hardlink tricks are not stopped by EXDEV (as they are by
    overlayfs). CRIU needs the source and target roots alike, so both stores of the lab use it."""

    @property
    def prefix(self) -> list[str]:
        base = super().prefix
        return [base[0], "--storage-driver", "vfs", *base[1:]]


def unsigned_flag(env: dict[str, str]) -> list[str]:
    """``--allow-unsigned`` once the CLI has it. Until then no signing key is configured in the
    lab, so a plain restore accepts an unsigned archive just the same."""
    return ["--allow-unsigned"] if _cli_has_allow_unsigned(env.get("PYTHONPATH", "")) else []


@functools.cache
def _cli_has_allow_unsigned(pythonpath: str) -> bool:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    helptext = subprocess.run(
        [sys.executable, "-m", "ferry.cli", "restore", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    ).stdout
    return "--allow-unsigned" in helptext


def restore_hostile(
    archive: Unpacked | Sealed, *, store: Path, name: str, env: dict[str, str], stem: str = "attack"
) -> subprocess.CompletedProcess[str]:
    """THE way every attack is restored: sealed (unless it comes sealed already), put in a
    file:// store, ``ferry restore URL --name NAME --allow-unsigned`` as an operator would."""
    sealed = archive.seal(stem) if isinstance(archive, Unpacked) else archive
    url = sealed.put(store, "app")
    argv = [sys.executable, "-m", "ferry.cli", "restore", url, "--name", name, *unsigned_flag(env)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=900, check=False)


def path_state(path: Path) -> Any:
    """Every byte, mode, owner and time below ``path`` (None: it does not exist)."""
    if not os.path.lexists(path):
        return None
    return tree_state(path) if path.is_dir() and not path.is_symlink() else tree_state(path)["."]


def mounts_below(prefixes: Iterable[str]) -> set[str]:
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
                found.add(point)
    return found


def pids_with(needles: Iterable[str]) -> dict[int, str]:
    """Processes whose command line holds one of ``needles`` (the workload's marker, a name)."""
    found: dict[int, str] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(n in cmdline for n in needles):
            found[int(entry)] = cmdline.strip()[:160]
    return found


@dataclass
class HostView:
    containers: set[str]
    volumes: set[str]
    mounts: set[str]
    pids: dict[int, str]


@dataclass
class Lab:
    source: Host
    target: Host
    base: Unpacked
    env: dict[str, str]  # for the ferry command: FERRY_PODMAN is the target store
    store: Path
    sentinel: Path
    attacks: Path  # parent of every attempt's own target directory
    marker: str  # in the snapshotted workload's command line: finds restored processes
    watched_mounts: list[str] = field(default_factory=list)
    source_userdata: list[Path] = field(default_factory=list)  # the original's files

    def view(self, name: str) -> HostView:
        t = self.target
        ids = t.podman("ps", "-a", "--no-trunc", "--format", "{{.ID}}").stdout.split()
        volumes = t.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
        return HostView(set(ids), set(volumes), mounts_below(self.watched_mounts), pids_with([self.marker, name]))


Exploit = Callable[["Attempt"], list[str]]
#: ferry's error for a failed `podman container restore`: Podman was asked, too late to refuse.
PODMAN_RESTORE_RAN = re.compile(r"^Command: .*podman.* container restore ", re.MULTILINE)


@dataclass
class Attempt:
    """One attack: its container name, its own target directory on the host, a marker path."""

    lab: Lab
    name: str
    dir: Path  # the attack's target tree (victim files), outside every container root
    marker: Path  # a file the attack tries to create; must never exist
    restored: bool = False
    _seen: set[Path] = field(default_factory=set)

    def exec(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self.lab.target.podman("exec", self.name, *cmd, check=False, timeout=60)

    def pid(self) -> int:
        out = self.lab.target.podman("inspect", "--format", "{{.State.Pid}}", self.name, check=False).stdout
        return int(out.strip()) if out.strip().isdigit() else 0

    def refused(
        self,
        archive: Unpacked | Sealed,
        match: str,
        *,
        exploit: Exploit | None = None,
        watch: Iterable[Path] = (),
        absent: Iterable[Path] = (),
        or_neutralised: bool = False,
    ) -> None:
        """Restore ``archive``; assert it was refused by name and changed nothing on the host.

        ``or_neutralised``: for host-bound fields every honest archive carries too (the source's
        pid files, shm mount, cgroup parent...), which ferry rebuilds for this host rather than
        refuses: a restore is then acceptable, provided it, and removing what it made, changed
        nothing the attack aimed at."""
        lab = self.lab
        watched = [lab.sentinel, self.dir, *watch, *lab.source_userdata]
        before = {p: path_state(p) for p in watched}
        must_be_absent = [self.marker, *absent]
        view = lab.view(self.name)

        harm: list[str] = []
        try:
            proc = restore_hostile(archive, store=lab.store / self.name, name=self.name, env=lab.env)
            said = (proc.stdout + proc.stderr).strip()
            print(f"ferry restore exit {proc.returncode}: {said[-2000:]}")
            harm += self._judge(proc.returncode, said, match, exploit, or_neutralised)
            harm += self._compare(before, before, must_be_absent, "after the restore")
        finally:
            middle = {p: path_state(p) for p in watched}
            harm += self._leftovers(view, expected=self.restored and or_neutralised)
        harm += self._compare(before, middle, must_be_absent, "when what the restore left was removed")
        assert not harm, f"attack {self.name}:\n  - " + "\n  - ".join(harm)

    def _judge(self, code: int, said: str, match: str, exploit: Exploit | None, or_neutralised: bool) -> list[str]:
        """Was it ferry that refused, cleanly and by name? If it restored, what can it do?"""
        if code == 0:
            self.restored = True
            harm = [] if or_neutralised else [f"RESTORED (exit 0): {said[-300:]}"]
            if exploit is not None:
                try:
                    harm += [f"exploit: {h}" for h in exploit(self)]
                except Exception as exc:  # the exploit is evidence only; never stop the clean-up
                    harm.append(f"exploit could not run: {type(exc).__name__}: {exc}")
            return harm
        if any(sign in said for sign in ("Traceback", "unexpectedly", "RecursionError", "MemoryError")):
            return [f"not a clean refusal: {said[-1500:]}"]
        harm = []
        if "ferry restore failed (" not in said or PODMAN_RESTORE_RAN.search(said):
            harm.append(f"not refused by ferry: Podman, runc or CRIU failed instead: {said[-900:]}")
        elif not re.search(match, said, re.IGNORECASE):
            harm.append(f"refusal does not name the problem (/{match}/): {said[-700:]}")
        return harm

    def _compare(self, before: dict[Path, Any], last: dict[Path, Any], absent: list[Path], when: str) -> list[str]:
        """What differs from ``before`` and was not already reported at ``last``."""
        out = []
        for path, state in before.items():
            now = path_state(path)
            if now != state and now != last[path]:
                out.append(f"{path} changed {when}: {describe(state, now)}")
        for path in absent:
            if os.path.lexists(path) and (last is before or path not in self._seen):
                self._seen.add(path)
                content = path.read_bytes()[:120] if path.is_file() else b""
                out.append(f"{path} exists {when} {content!r}")
        return out

    def _leftovers(self, view: HostView, *, expected: bool = False) -> list[str]:
        """Name what the attempt left behind, then remove it so the next attack starts clean.
        ``expected``: the restore was allowed, so its container and volume are no harm."""
        lab, out = self.lab, []
        now = lab.view(self.name)
        for cid in sorted(now.containers - view.containers):
            state = lab.target.podman("inspect", "--format", "{{.Name}} {{.State.Status}}", cid, check=False)
            if not expected:
                out.append(f"container left in the store: {cid[:12]} {state.stdout.strip()}")
            lab.target.podman("rm", "-f", "-t", "0", cid, check=False)
        for vol in sorted(now.volumes - view.volumes):
            if not expected:
                out.append(f"volume left in the store: {vol}")
            lab.target.podman("volume", "rm", "-f", vol, check=False)
        for pid, cmdline in sorted(_lasting(pids_with([lab.marker, self.name]), view.pids).items()):
            out.append(f"process left running: {pid} {cmdline}")
            _kill(pid)
        after = mounts_below(lab.watched_mounts)
        out += [f"mount gone: {m}" for m in sorted(view.mounts - after)]
        out += [f"mount left: {m}" for m in sorted(after - view.mounts)]
        return out


def _parent(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _lasting(now: dict[int, str], before: dict[int, str]) -> dict[int, str]:
    """New processes that are not a passing fork of one seen before (the workload forks for
    every ``usleep``, and a fork shows its parent's command line until it execs)."""
    new = {pid: cmd for pid, cmd in now.items() if pid not in before and _parent(pid) not in before}
    if new:
        time.sleep(1)
    return {pid: cmd for pid, cmd in new.items() if os.path.exists(f"/proc/{pid}") and _parent(pid) not in before}


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def describe(before: Any, after: Any) -> str:
    if before is None or after is None:
        return f"{'absent' if before is None else 'present'} -> {'absent' if after is None else 'present'}"
    if isinstance(before, dict):
        added = sorted(set(after) - set(before))
        gone = sorted(set(before) - set(after))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        return f"added {added[:6]}, removed {gone[:6]}, modified {changed[:6]}"
    return "metadata or content differs"

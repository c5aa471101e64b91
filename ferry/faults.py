"""Deliberate failures, for proving that ferry survives them (tests and fire drills only).

``FERRY_FAULTS_FILE`` names a file listing stages, one per line (``publish``, ``download``,
``verify``, ``restore``...). The first time a listed stage runs it fails as a real failure of
that stage would, and its line is removed, so a retry goes through. A line ``hang:<stage>``
makes the stage stop there instead (it writes ``<file>.hanging`` and sleeps), for killing the
process at a known point; removing ``<file>.hanging`` lets it go on (without failing), for doing
something to the world at a known point. Without the variable this module does nothing.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ferry.errors import FerryError, IntegrityError, RestoreError, StoreError

ENV = "FERRY_FAULTS_FILE"
_KINDS: dict[str, type[FerryError]] = {
    "publish": StoreError,
    "download": StoreError,
    "verify": IntegrityError,
    "restore": RestoreError,
}


def maybe_fail(stage: str) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    with Path(path).open("a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        lines = [line.strip() for line in f.read().splitlines() if line.strip()]
        hang = f"hang:{stage}" in lines
        if stage not in lines and not hang:
            return
        lines.remove(f"hang:{stage}" if hang else stage)
        f.seek(0)
        f.truncate()
        f.write("".join(f"{line}\n" for line in lines))
    if hang:
        hanging = Path(f"{path}.hanging")
        hanging.write_text(stage)
        deadline = time.monotonic() + 3600
        while hanging.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not hanging.exists():
            return
    kind = _KINDS.get(stage, FerryError)
    raise kind(f"Injected fault in stage {stage!r} ({ENV}={path}).")

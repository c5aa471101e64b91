"""Where ferry keeps the files of a run in progress on this host (``FERRY_STAGING``)."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ferry.names import file_name

DEFAULT_STAGING = "/var/tmp/ferry"  # noqa: S108 - root-owned, created 0700 per run


def staging_root() -> Path:
    return Path(os.environ.get("FERRY_STAGING", DEFAULT_STAGING))


def new_run_dir(kind: str, name: str) -> Path:
    """A fresh private directory for one snapshot or restore."""
    path = staging_root() / kind / f"{utcnow_compact()}-{file_name(name, fallback='run')}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True, mode=0o700)
    return path


def run_dir(kind: str, name: str) -> Path:
    """The staging directory of the current Prefect flow run: the same again when the run is
    retried, which is what lets a retry pick up the files of the stages it does not redo."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    if not run_id:
        return new_run_dir(kind, name)
    path = staging_root() / kind / f"{file_name(name, fallback='run')}-{run_id}"
    path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


def remove_run_dir(path: Path) -> None:
    # Only ever delete what ferry created below its staging root.
    if staging_root() in path.resolve().parents:
        shutil.rmtree(path, ignore_errors=True)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow_compact() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")

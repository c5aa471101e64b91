"""How a failed snapshot resumes, in one place.

A snapshot's stages are Prefect tasks with persisted results, cached per flow run: a retry of a
failed run (Prefect's Retry button, ``prefect flow-run retry``) gets the finished stages' results
back and runs only the rest. Three files under the run's staging directory (``ferry.staging``
``run_dir``: the same directory again for a retried run) and one per container keep that safe:

* the **generation** (``<run dir>/generation``): a rollback restarts the container, so the dump
  this run made no longer describes it. The rollback bumps the generation, and the flow passes it
  to the rootfs-diff and dump tasks, so their cached results no longer apply and a retry takes
  a fresh dump;
* the **dumped marker** (``<run dir>/dumped-<generation>``): written once the dump task finished;
  a retry that finds it does not freeze the container again (the dump is not redone either: its
  result is cached). The dump task streams its archive into the store while Podman writes the
  export, and keeps the export's raw copy, ``<run dir>/dump.tar``: when the streamed archive
  failed but the dump did not, the dump task still finishes (and is cached), and the archive
  stage rebuilds the archive from that copy, in the same run or on a retry;
* the **in-flight marker** (``<staging root>/inflight/<container id>``): written before a
  stop-mode dump, removed once the archive is published or the container is back. A later run
  that finds it for a container that is stopped and checkpointed knows the previous run died
  between the dump and the publish, and brings the container back before anything else
  (``tasks.inspect``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ferry.names import file_name
from ferry.staging import staging_root


def generation(run_dir: Path) -> int:
    """How many times a rollback has invalidated this run's dump."""
    try:
        return int((run_dir / "generation").read_text())
    except (OSError, ValueError):
        return 0


def bump_generation(run_dir: Path) -> None:
    # Best effort: on a full disk the rollback matters more than the retry bookkeeping.
    with contextlib.suppress(OSError):
        (run_dir / "generation").write_text(str(generation(run_dir) + 1))


def mark_dumped(run_dir: Path, gen: int) -> None:
    (run_dir / f"dumped-{gen}").touch()


def is_dumped(run_dir: Path, gen: int) -> bool:
    """Whether this run already dumped the container (so a retry must not freeze it again)."""
    return (run_dir / f"dumped-{gen}").exists()


def _inflight(container_id: str) -> Path:
    folder = staging_root() / "inflight"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    return folder / file_name(container_id, limit=128, fallback="container")


def mark_inflight(container_id: str) -> None:
    _inflight(container_id).write_text(str(os.getpid()))


def clear_inflight(container_id: str) -> None:
    _inflight(container_id).unlink(missing_ok=True)


def is_inflight(container_id: str) -> bool:
    return _inflight(container_id).exists()

"""Retention for Prefect's persisted results on this host: stage results older than the retention
are deleted (the nightly run does it).

Snapshot and restore stages persist their results so that a retried run resumes after its last
finished stage; Prefect never deletes them. A result older than the retention only serves the
retry of a run that old: without it, the retry runs that stage again.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

log = logging.getLogger("ferry.results")


def expire_results(root: Path, max_age: timedelta, now: float | None = None) -> int:
    """Delete the regular files under ``root`` last written more than ``max_age`` ago; returns how
    many. Symbolic links are neither followed nor deleted."""
    if not root.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - max_age.total_seconds()
    removed = 0
    for top, _dirs, files in os.walk(root):
        for name in files:
            path = Path(top) / name
            try:
                if not path.is_symlink() and path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError as exc:  # another run's result, gone or busy: not ours to fail on
                log.warning("could not expire %s: %s", path, exc)
    return removed


def result_storage_path() -> Path:
    """Where Prefect persists results on this host (PREFECT_LOCAL_STORAGE_PATH)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().results.local_storage_path).expanduser()


@task(name="expire-results", retries=0, cache_policy=NO_CACHE)
def expire_results_task(days: int) -> int:
    return expire_results(result_storage_path(), timedelta(days=days))

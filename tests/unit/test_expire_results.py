"""Retention of Prefect's persisted results: old files go, new ones, links and what they point to stay."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from tasks.expire_results import expire_results


def _file(path: Path, age_days: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("result")
    stamp = now - age_days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_results_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    now = time.time()
    root = tmp_path / "storage"
    old = _file(root / ("a" * 8), 20, now)
    nested_old = _file(root / "sub" / "b", 15, now)
    fresh = _file(root / "c", 2, now)
    outside = _file(tmp_path / "elsewhere" / "keep", 100, now)
    (root / "link").symlink_to(outside)
    (root / "linkdir").symlink_to(outside.parent, target_is_directory=True)

    assert expire_results(root, timedelta(days=14), now) == 2

    assert not old.exists() and not nested_old.exists()
    assert fresh.exists() and outside.exists() and (root / "link").is_symlink()
    assert expire_results(root, timedelta(days=14), now) == 0


def test_no_result_storage_yet_is_nothing_to_do(tmp_path: Path) -> None:
    assert expire_results(tmp_path / "absent", timedelta(days=1)) == 0

"""ferry/criu_probe.py: a restored process found dead says why, from its exit status (the probe
is its subreaper), however soon it died after the restore."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ferry import criu_probe


def _zombie(code: int) -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(code)  # a zombie of this process until the probe's check reaps it
    while criu_probe._alive(pid):
        time.sleep(0.01)
    return pid


@pytest.mark.parametrize("code", [3, 4])
def test_a_process_gone_before_the_first_look_names_its_broken_connection(code: int, tmp_path: Path) -> None:
    with pytest.raises(criu_probe.ProbeFailed, match="it exited because its established TCP connection broke"):
        criu_probe._check_running(_zombie(code), 1, tmp_path / "lock", "verify")


def test_any_other_end_gives_its_status(tmp_path: Path) -> None:
    with pytest.raises(criu_probe.ProbeFailed, match=r"is not running: it ended with status 9$"):
        criu_probe._check_running(_zombie(9), 1, tmp_path / "lock", "verify")

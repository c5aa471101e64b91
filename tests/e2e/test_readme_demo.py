"""README's first command, as written: the main job on the embedded default (no Prefect server)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]


def test_readme_demo_command_runs(real_criu: None, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme.split("```")[1], "README's first command is no longer scripts/demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["FERRY_DEMO_DIR"] = str(tmp_path / "demo")
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")

    proc = subprocess.run(
        [str(ROOT / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=900, check=False
    )

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo OK" in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.startswith("archive: file://") for line in lines)
    demo = str(tmp_path / "demo")
    runroot = "/run/ferry-demo-" + hashlib.md5(f"{demo}\n".encode()).hexdigest()[:8]  # noqa: S324
    podman = [
        "podman",
        "--root",
        f"{demo}/root",
        "--runroot",
        runroot,
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
        "--runtime",
        "runc",
    ]
    subprocess.run([*podman, "rm", "-af", "-t", "0"], capture_output=True, check=False)

"""CRIU core images: the restored process gets the credentials written in core-*.img.

Part of issue 10's acceptance suite (see tests/e2e/attacks/__init__.py): each test is an archive an
attacker with write access to the bucket could write, restored as root on the real restore path.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import criu_edit as criu
from tests.attack_lab import Attempt, Lab
from tests.e2e.attacks.exploits import (
    clone,
    pid1_privileges,
)

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]


# ---------------------------------------------------------------------------------------------
# CRIU images: the restored process gets the credentials written in core-*.img


def test_the_forged_core_image_says_what_the_attack_claims(lab: Lab, tmp_path: Path) -> None:
    """Self-check of the forge (no restore): CRIU's own decoder, crit, reads the rewritten
    core image with the full capability set and seccomp off, and every other field unchanged."""
    member = next(m for m in lab.base.members if m.info.name.startswith("checkpoint/core-") and m.data)
    caps = criu.process_caps("self", "CapBnd")
    decoded = {}
    for label, data in (
        ("before", member.data),
        ("after", criu.escalate(member.data or b"", caps=criu.cap_words(caps), seccomp_off=True)),
    ):
        (tmp_path / label).write_bytes(data or b"")
        out = subprocess.run(
            ["crit", "decode", "-i", str(tmp_path / label)], capture_output=True, text=True, check=True
        )
        decoded[label] = json.loads(out.stdout)["entries"][0]
    before, after = decoded["before"], decoded["after"]
    creds = after["thread_core"]["creds"]
    for key in ("cap_inh", "cap_prm", "cap_eff", "cap_bnd"):
        assert creds[key] == criu.cap_words(caps), key
    assert before["thread_core"]["seccomp_mode"] == "filter"
    assert after["thread_core"]["seccomp_mode"] == "disabled" and "seccomp_filter" not in after["thread_core"]
    for part in (before, after):
        for key in ("creds", "seccomp_mode", "seccomp_filter"):
            part["thread_core"].pop(key, None)
    assert after == before


@pytest.mark.parametrize("change", ["capabilities", "seccomp", "both", "beyond-this-host"])
def test_criu_core_image_raises_credentials(lab: Lab, atk: Attempt, change: str) -> None:
    """Capabilities up to what CRIU itself holds, seccomp off, or both; ``beyond-this-host``
    asks for every capability the kernel knows, more than this sandbox grants even to root (the
    capset fails: issue 10 saw CRIU hang, Podman time out and a privileged process stay behind)."""
    every = (1 << (int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1)) - 1
    caps = {"seccomp": None, "beyond-this-host": every}.get(change, criu.process_caps("self", "CapBnd"))
    u = clone(lab)
    for member in u.members:
        if member.info.name.startswith("checkpoint/core-") and member.data:
            member.data = criu.escalate(
                member.data, caps=None if caps is None else criu.cap_words(caps), seccomp_off=change != "capabilities"
            )
            member.info.size = len(member.data)
    atk.refused(u, r"core-\d+\.img|capabilit|seccomp", exploit=pid1_privileges)

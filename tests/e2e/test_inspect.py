"""ferry inspect on real checkpoints: Podman, runc and CRIU dump; crit decodes the images."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ferry.cli.inspect import inspect_archive
from ferry.inspection_view import format_inspection
from ferry.runtime import criu_version
from flows.snapshot import snapshot
from tests.archive_forge import MIN_MEMBERS, Forge
from tests.helpers import IMAGE, WORKLOAD, Host

pytestmark = [
    pytest.mark.root,
    pytest.mark.podman,
    pytest.mark.criu,
]


@pytest.mark.usefixtures("prefect_harness", "staging")
def test_inspect_describes_a_real_snapshot(host: Host, tmp_path: Path) -> None:
    cid = host.run_workload("app")
    result = snapshot("app", f"file://{tmp_path}/store", leave_running=True)

    data = inspect_archive(result.url)

    assert data["verified"] is True, data["verification"]
    assert data["container"] == {"name": "app", "id": cid}
    image_id = host.podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    assert data["image"] == {"name": IMAGE, "id": image_id}
    assert data["engine"] == "podman" and data["runtime"].startswith("runc")
    assert data["source"]["criu"] == criu_version() and data["source"]["podman"]
    assert data["mode"] == "leave-running" and data["compression"] == "zstd"
    assert data["command"] == ["sh", "-c", WORKLOAD]
    comms = {p["pid"]: p["comm"] for p in data["processes"]}
    assert comms.get(1) == "sh", data["processes"]
    assert all(p["ppid"] in comms or p["pid"] == 1 for p in data["processes"])
    sizes = data["sizes"]
    assert sizes["archive"] == result.archive_bytes
    assert sizes["memory_pages"] > 0 and sizes["total"] > sizes["memory_pages"]
    assert sizes["changed_files"] >= 3  # data/log, data/counter, data/new/added (and their dirs)
    assert sizes["deleted_files"] == 1  # /etc/deleteme
    assert data["dump_stats"]["pages_written"] > 0
    compat = data["compatibility"]
    assert compat["criu"]["ok"] is True, compat["criu"]
    assert compat["cpu"] == {"ok": None, "detail": "no cpuinfo image in the archive; not checked"}
    assert compat["image"]["ok"] is True
    assert compat["name"]["ok"] is False, "app is still running here"
    assert data["notes"] == []
    json.dumps(data)
    text = format_inspection(data)
    assert "[1] sh" in text and "[FAIL] name:" in text

    host.podman("rm", "-f", "-t", "0", "app")
    assert inspect_archive(result.url)["compatibility"]["name"]["ok"] is True


def _run(*argv: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(argv, input=stdin, check=True, capture_output=True).stdout


def test_cpuinfo_is_checked_by_criu_on_this_host(host: Host, tmp_path: Path) -> None:
    _run("criu", "cpuinfo", "dump", "-D", str(tmp_path))
    same = (tmp_path / "cpuinfo.img").read_bytes()
    # Another CPU, as far as CRIU can tell: a larger XSAVE area than this one has.
    decoded = json.loads(_run("crit", "decode", "-i", str(tmp_path / "cpuinfo.img")))
    decoded["entries"][0]["x86_entry"][0]["xsave_size_max"] += 1 << 20
    other = _run("crit", "encode", stdin=json.dumps(decoded).encode())

    for name, cpuinfo, ok in (("same", same, True), ("other", other, False)):
        path = tmp_path / f"{name}.tar.zst"
        path.write_bytes(Forge(members={**MIN_MEMBERS, "checkpoint/cpuinfo.img": cpuinfo}).bytes())
        cpu = inspect_archive(f"file://{path}")["compatibility"]["cpu"]
        assert cpu["ok"] is ok, cpu
    assert "mismatch" in cpu["detail"]

"""The `ferry` command in scripts: --json on every command (validated against its JSON Schema),
every exit status, FERRY_STORE, strict durations, human sizes and ages, inspect of an encrypted
archive. Real processes (`python -m ferry.cli`), real Podman and CRIU: two snapshots, taken once
for the module."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ferry.keygen import keygen
from tests.helpers import IMAGE, Host, env_with, s3_env, wait_for
from tests.servers import free_port

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu]

KEY = "11" * 32  # FERRY_ENCRYPTION_KEY of the encrypted snapshot
_COUNTER = itertools.count()


def ferry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def valid(name: str, stdout: str) -> Any:
    """stdout is exactly one JSON document, valid against ferry/cli/schemas/<name>.json."""
    schema = json.loads((resources.files("ferry.cli") / "schemas" / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(stdout)
    jsonschema.Draft202012Validator(schema).validate(document)
    return document


def failed(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> dict[str, Any]:
    """A --json failure: the exit status, the error document on stdout, the human line on stderr."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    error = valid("error", proc.stdout)["error"]
    assert error["exit_code"] == code
    assert "failed (" in proc.stderr and "Traceback" not in proc.stderr
    for word in words:
        assert word in error["message"] and word in proc.stderr, (word, error)
    return error


@dataclass
class Scripted:
    host: Host
    env: dict[str, str]  # FERRY_STORE is the store
    store: str
    url: str  # a plain snapshot of app, in the store
    encrypted: str  # an encrypted snapshot of app, in another store
    tmp: Path


@pytest.fixture(scope="module")
def scripted(
    real_criu: None, rootfs_tar: Path, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scripted]:
    from prefect.settings import PREFECT_API_URL

    tmp = tmp_path_factory.mktemp("scripting")
    host = Host(Path(f"/var/tmp/fth/{os.getpid()}-{next(_COUNTER)}s"))
    try:
        host.podman("import", str(rootfs_tar), IMAGE)
        store = f"file://{tmp}/store"
        env = env_with(
            host, PREFECT_API_URL=str(PREFECT_API_URL.value()), FERRY_STAGING=str(tmp / "staging"), FERRY_STORE=store
        )
        env.pop("FERRY_ENCRYPTION_KEY", None)
        host.run_workload("app")
        snap = ferry(env, "snapshot", "app", "--leave-running", "--json")  # no --to: FERRY_STORE
        assert snap.returncode == 0, snap.stderr
        made = valid("snapshot", snap.stdout)
        assert made["url"].startswith(store + "/app/") and made["mode"] == "leave-running"
        enc = ferry(
            dict(env, FERRY_ENCRYPTION_KEY=KEY), "snapshot", "app", "--to", f"file://{tmp}/enc", "--leave-running"
        )
        assert enc.returncode == 0, enc.stderr
        host.podman("rm", "-f", "-t", "0", "app")  # so `inspect` finds the name free here
        yield Scripted(host, env, store, made["url"], enc.stdout.strip().splitlines()[-1], tmp)
    finally:
        host.cleanup()
        shutil.rmtree(host.base, ignore_errors=True)


def test_version_and_global_options_anywhere(scripted: Scripted) -> None:
    version = ferry(scripted.env, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"ferry {importlib.metadata.version('ferry')}"
    for argv in (["--json", "ls"], ["ls", "--json"], ["-v", "ls", "--json"], ["ls", scripted.store, "--json", "-v"]):
        listed = ferry(scripted.env, *argv)
        assert listed.returncode == 0, (argv, listed.stderr)
        assert [a["url"] for a in valid("ls", listed.stdout)["archives"]] == [scripted.url], argv


def test_ls_shows_human_sizes_and_ages(scripted: Scripted) -> None:
    listed = ferry(scripted.env, "ls")  # FERRY_STORE
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("app "))
    assert re.search(r"\(\d+[smh] ago\)", row), row
    assert re.search(r" \d+\.\d (KiB|MiB) ", row), row


def test_ls_json_all_lists_incomplete_uploads_and_broken_sidecars(scripted: Scripted) -> None:
    copy = scripted.tmp / "listed"
    shutil.copytree(scripted.tmp / "store", copy)
    (copy / "app" / "20990101T000000000Z-h-000000000000.tar.zst").write_bytes(b"half an upload")
    broken = copy / "app" / "20980101T000000000Z-h-000000000000.tar.zst"
    broken.write_bytes(b"x")
    Path(f"{broken}.ferry.json").write_text("{not json")

    listed = valid("ls", ferry(scripted.env, "ls", f"file://{copy}", "--all", "--json").stdout)

    assert [a["container"] for a in listed["archives"]] == ["app"] and listed["archives"][0]["signed"] is True
    assert listed["incomplete"] == [f"file://{copy}/app/20990101T000000000Z-h-000000000000.tar.zst"]
    assert [b["url"] for b in listed["broken"]] == [f"file://{broken}"]
    assert valid("ls", ferry(scripted.env, "ls", f"file://{copy}", "--json").stdout)["incomplete"] is None


def test_every_command_prints_json_valid_against_its_schema(scripted: Scripted) -> None:
    env = scripted.env
    checked = valid("verify", ferry(env, "verify", scripted.url, "--json").stdout)
    assert checked["ok"] is True and checked["manifest"] is True and "ferry@tests" in checked["signature"]

    inspected = ferry(env, "inspect", scripted.url, "--json")
    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    view = valid("inspect", inspected.stdout)
    assert view["verified"] is True and view["container"]["name"] == "app"

    pruned = valid("prune", ferry(env, "prune", "--keep", "1", "--dry-run", "--json").stdout)
    assert pruned == {"store": scripted.store, "dry_run": True, "deleted": []}

    made = valid("keygen", ferry(env, "keygen", "--out", str(scripted.tmp / "k"), "--name", "ferry@x", "--json").stdout)
    assert made["name"] == "ferry@x" and made["public_line"].startswith("ssh-ed25519 ")

    doctor = ferry(env, "doctor", "--json")
    report = valid("doctor", doctor.stdout)
    assert doctor.returncode == 0 and report["ok"] is True, doctor.stdout
    assert any(c["name"] == "criu" and c["status"] == "ok" for c in report["checks"])

    restored = ferry(env, "restore", "--latest", "app", "--name", "app-copy", "--json")  # FERRY_STORE
    assert restored.returncode == 0, restored.stderr
    assert valid("restore", restored.stdout) | {"id": ""} == {
        "name": "app-copy",
        "id": "",
        "state": "running",
        "source": scripted.store,
        "latest": "app",
    }
    before = scripted.host.counter("app-copy")
    wait_for(lambda: scripted.host.counter("app-copy") > before, what="the restored copy to count")


def test_usage_errors_exit_2(scripted: Scripted) -> None:
    failed(ferry(scripted.env, "frobnicate", "--json"), 2, "frobnicate")
    for value in ("0d", "-5d", "infd", "5", "1.5h", "3y"):
        proc = ferry(scripted.env, "prune", f"--older-than={value}", "--json")
        failed(proc, 2, "--older-than", value, "30d")
    no_store = {k: v for k, v in scripted.env.items() if k != "FERRY_STORE"}
    for argv in (["ls"], ["prune", "--keep", "3"], ["snapshot", "app"], ["restore", "--latest", "app"]):
        failed(ferry(no_store, *argv, "--json"), 2, "FERRY_STORE")
    human = ferry(no_store, "ls")
    assert human.returncode == 2 and human.stdout == "" and "FERRY_STORE" in human.stderr


def test_not_found_exits_3(scripted: Scripted) -> None:
    failed(ferry(scripted.env, "ls", f"file://{scripted.tmp}/no-such-store", "--json"), 3, "no store at")
    failed(ferry(scripted.env, "prune", f"file://{scripted.tmp}/no-such-store", "--keep", "1", "--json"), 3)
    missing = f"{scripted.store}/app/none.tar.zst"
    for command in ("verify", "inspect", "restore"):
        failed(ferry(scripted.env, command, missing, "--json"), 3, missing)
    failed(ferry(scripted.env, "snapshot", "ghost", "--json"), 3, "no container 'ghost'")
    failed(ferry(scripted.env, "restore", "--latest", "ghost", "--json"), 3, "no complete snapshot")


def test_integrity_and_trust_refusals_exit_4(scripted: Scripted) -> None:
    tampered = scripted.tmp / "tampered"
    shutil.copytree(scripted.tmp / "store", tampered)
    archive = tampered / scripted.url.removeprefix(scripted.store + "/")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    url = f"file://{archive}"
    failed(ferry(scripted.env, "verify", url, "--json"), 4)
    failed(ferry(scripted.env, "restore", url, "--name", "never", "--json"), 4)
    # A stream broken before its first member is an error; one broken later shows what came before it.
    inspected = ferry(scripted.env, "inspect", url, "--json")
    assert inspected.returncode == 4, inspected.stderr
    if "error" in json.loads(inspected.stdout):
        failed(inspected, 4, "The archive cannot be read")
    else:
        assert valid("inspect", inspected.stdout)["verified"] is False
    assert scripted.host.state("never") == "absent"

    stranger = keygen(scripted.tmp / "stranger", "ferry@stranger")
    elsewhere = dict(scripted.env, FERRY_SIGNING_KEY=str(stranger.private), FERRY_TRUSTED_KEYS=str(stranger.public))
    failed(ferry(elsewhere, "verify", scripted.url, "--json"), 4, "not in this host's keyring")
    view = valid("inspect", ferry(elsewhere, "inspect", scripted.url, "--json").stdout)
    assert view["verified"] is False and "not in this host's keyring" in view["verification"]
    untrusted = ferry(elsewhere, "inspect", scripted.url)
    assert untrusted.returncode == 4 and "Verified:   NO: " in untrusted.stdout


def test_inspect_decrypts_with_the_key_and_fails_without_it(scripted: Scripted) -> None:
    keyed = dict(scripted.env, FERRY_ENCRYPTION_KEY=KEY)
    inspected = ferry(keyed, "inspect", scripted.encrypted, "--json")
    assert inspected.returncode == 0, inspected.stdout + inspected.stderr
    view = valid("inspect", inspected.stdout)
    assert view["verified"] is True and view["container"]["name"] == "app" and view["processes"]
    assert "signed by ferry@tests" in view["verification"]

    failed(ferry(scripted.env, "inspect", scripted.encrypted, "--json"), 2, "FERRY_ENCRYPTION_KEY")
    wrong = ferry(dict(scripted.env, FERRY_ENCRYPTION_KEY="22" * 32), "inspect", scripted.encrypted, "--json")
    failed(wrong, 4, "cannot be decrypted: wrong FERRY_ENCRYPTION_KEY")


def test_an_unreachable_store_exits_5(scripted: Scripted) -> None:
    env = s3_env(scripted.env, free_port())  # nothing listens there
    failed(ferry(env, "ls", "s3://ferry/store", "--json"), 5, "Could not connect")
    failed(ferry(env, "verify", "s3://ferry/store/app/x.tar.zst", "--json"), 5, "Could not connect")


def test_a_runtime_failure_exits_1(scripted: Scripted) -> None:
    scripted.host.podman("create", "--name", "taken", IMAGE, "sleep", "1")
    failed(ferry(scripted.env, "restore", scripted.url, "--name", "taken", "--json"), 1, "taken")


def test_an_interrupt_exits_130(scripted: Scripted) -> None:
    """Ctrl-C while ferry waits on a store that accepted the connection and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        env = s3_env(scripted.env, server.getsockname()[1])
        proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli", "ls", "s3://ferry/store"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            conn, _ = server.accept()  # ferry is waiting for the answer now
            with conn:
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "ferry: interrupted" in err and "Traceback" not in err

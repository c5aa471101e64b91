"""Hostile archives: `ferry verify` and `ferry restore` refuse every one, by name, and the host
stays exactly as it was (no container, no image, not one byte of the sentinel tree changed).

The corpus (tests/hostile_corpus.py) is built from real snapshots of the test workload, taken
once for this module: one of the usual image, one of an image holding ``/data/link -> /``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ferry.errors import UnsafeArchiveError
from ferry.verification import verify_source
from flows.restore import restore
from flows.snapshot import snapshot
from storage.reading import open_archive, read_sidecar
from tests import hostile_corpus as hc
from tests.helpers import IMAGE, Host, linked_rootfs_tar

pytestmark = [pytest.mark.root, pytest.mark.podman, pytest.mark.criu, pytest.mark.usefixtures("prefect_harness")]

REPO = Path(__file__).resolve().parents[2]
LINK_IMAGE = "localhost/ferry-hostile-link:latest"
ALL_CASES = [*hc.CASES, *hc.IMAGE_LINK_CASES]
#: The image-symlink cases look harmless without the image: only the restore can refuse them.
VERIFY_CASES = list(hc.CASES)
MIN_CORPUS = 30


@dataclass
class Lab:
    host: Host
    sentinel: Path
    bases: dict[str, hc.Unpacked]
    built: dict[str, hc.Hostile] = field(default_factory=dict)

    def case(self, name: str) -> hc.Hostile:
        if name not in self.built:
            base = self.bases["link" if name in hc.IMAGE_LINK_CASES else "plain"]
            self.built[name] = hc.build(name, base, str(self.sentinel))
        return self.built[name]

    def snapshot_of_host(self) -> tuple[set[str], str, dict[str, tuple[object, ...]]]:
        images = self.host.podman("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}").stdout
        return self.host.names(), images, hc.tree_state(self.sentinel)


def _base(host: Host, name: str, image: str, store: Path) -> hc.Unpacked:
    host.run_workload(name, image)
    result = snapshot(name, f"file://{store}", leave_running=True)
    return hc.Unpacked.parse(Path(result.url.removeprefix("file://")).read_bytes(), image_link=image == LINK_IMAGE)


@pytest.fixture(scope="module")
def lab(
    real_criu: None, rootfs_tar: Path, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    """One Podman store for the module (like the `host` fixture, but snapshotted only once)."""
    work = tmp_path_factory.mktemp("hostile")
    base = Path(f"/var/tmp/fth/{os.getpid()}-hostile")  # podman: runroot below 50 characters
    sentinel = Path(f"/var/tmp/ferry-sentinel-{os.getpid()}")
    shutil.rmtree(sentinel, ignore_errors=True)
    host = Host(base)
    try:  # a failed setup is cleaned up too
        hc.make_sentinel(sentinel)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("FERRY_PODMAN", host.env_value)
            mp.setenv("FERRY_STAGING", str(work / "staging"))
            host.podman("import", str(rootfs_tar), IMAGE)
            host.podman("import", str(linked_rootfs_tar(work / "link-image")), LINK_IMAGE)
            bases = {
                "plain": _base(host, "app", IMAGE, work / "seed"),
                "link": _base(host, "linked", LINK_IMAGE, work / "seed"),
            }
            yield Lab(host, sentinel, bases)
    finally:
        host.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(sentinel, ignore_errors=True)


def test_corpus_size(record_property: pytest.RecordProperty) -> None:
    size = len(ALL_CASES)
    record_property("hostile_corpus_size", size)
    print(f"hostile corpus: {size} archives")
    assert size >= MIN_CORPUS, f"hostile corpus: {size} archives, fewer than {MIN_CORPUS}"
    assert len(set(ALL_CASES)) == size


def test_the_base_archives_are_real_and_valid(lab: Lab) -> None:
    """The corpus changes one thing each time: the unchanged base must verify as it is."""
    for kind, base in lab.bases.items():
        assert base.find(hc.INVENTORY).data, kind
        assert any(m.info.name == hc.DIFF for m in base.members), kind
        assert base.manifest["container"]["name"] in ("app", "linked")
    assert any(m.info.name.startswith("checkpoint/pages-") for m in lab.bases["plain"].members)


def _cli_env() -> dict[str, str]:
    keep = ("FERRY_SIGNING_KEY", "FERRY_TRUSTED_KEYS")  # the session's keys: the corpus is signed with them
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_") or k in keep}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.parametrize("name", VERIFY_CASES)
def test_ferry_verify_refuses(lab: Lab, name: str, tmp_path: Path) -> None:
    case = lab.case(name)
    url = hc.put_in_store(case, tmp_path / "store")
    before = hc.tree_state(lab.sentinel)
    argv = [sys.executable, "-m", "ferry.cli", "verify", url]
    argv += ["--allow-unverified"] if case.allow_unverified else []
    # An archive without a sidecar cannot be signed: it gets past the signature check only with --allow-unsigned.
    argv += ["--allow-unsigned"] if case.sidecar is None else []

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO, env=_cli_env(), check=False)

    said = proc.stdout + proc.stderr
    assert proc.returncode == 4, f"exit {proc.returncode}: {said}"
    assert "Traceback" not in said and "unexpectedly" not in said, said
    assert "ferry verify failed (archive)" in proc.stderr, said
    assert re.search(case.match, proc.stderr), f"expected /{case.match}/ in: {said}"
    assert hc.tree_state(lab.sentinel) == before


@pytest.mark.parametrize("name", VERIFY_CASES)
def test_allow_unsigned_keeps_every_other_check(lab: Lab, name: str, tmp_path: Path) -> None:
    """The same archives, unsigned, with --allow-unsigned: refused all the same, for the same reason."""
    case = lab.case(name)
    url = hc.put_in_store(case, tmp_path / "store", signed=False)
    before = hc.tree_state(lab.sentinel)

    with pytest.raises(case.error, match=case.match):
        sidecar = read_sidecar(url)
        with open_archive(url) as source:
            verify_source(source, sidecar, allow_unverified=case.allow_unverified, allow_unsigned=True)

    assert hc.tree_state(lab.sentinel) == before


@pytest.mark.parametrize("name", ALL_CASES)
def test_ferry_restore_refuses_and_changes_nothing(lab: Lab, name: str, tmp_path: Path, staging: Path) -> None:
    case = lab.case(name)
    url = hc.put_in_store(case, tmp_path / "store")
    names, images, sentinel = lab.snapshot_of_host()

    with pytest.raises(case.error, match=case.match):
        restore(url, name="hostile-copy", allow_unverified=case.allow_unverified, allow_unsigned=case.sidecar is None)

    after_names, after_images, after_sentinel = lab.snapshot_of_host()
    assert after_names == names, "a container was created"
    assert after_images == images, "the host's images changed"
    assert after_sentinel == sentinel, "the sentinel tree outside the container root changed"
    assert lab.host.podman("container", "exists", "hostile-copy", check=False).returncode == 1


def _config_contradicts_manifest(base: hc.Unpacked) -> hc.Hostile:
    """Consistent in every hash (as an attacker who can write the bucket makes it), but config.dump
    names another container than the manifest the one-pass restore prepared the host by."""
    u = base.clone()
    config = json.loads(u.find("config.dump").data or b"{}")
    u.set("config.dump", json.dumps({**config, "name": "not-the-manifests"}).encode())
    return hc.seal("config-contradicts-manifest", u, UnsafeArchiveError, "config.dump disagrees with its manifest")


LAST_CHECKS = {
    "config-contradicts-manifest": _config_contradicts_manifest,
    "core-root-for-non-root-spec": lambda base: hc.core_root_for_non_root_spec(base, ""),
}


@pytest.mark.parametrize("name", sorted(LAST_CHECKS))
def test_a_refusal_at_the_last_check_hands_podman_nothing(lab: Lab, name: str, tmp_path: Path, staging: Path) -> None:
    """The one-pass restore writes the tar for Podman while it checks the archive. When a check
    that can only run at the end fails (config.dump against the manifest's claims; the CRIU core
    images' credentials against the rebuilt spec), the partial tar is gone, no container exists
    and Podman was never asked to restore (nor shown the tar)."""
    case = LAST_CHECKS[name](lab.bases["plain"])
    url = hc.put_in_store(case, tmp_path / "store")
    calls = tmp_path / "podman-calls"
    wrapper = tmp_path / "podman"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\nexec {lab.host.env_value} "$@"\n')
    wrapper.chmod(0o755)
    names, images, sentinel = lab.snapshot_of_host()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERRY_PODMAN", str(wrapper))
        with pytest.raises(case.error, match=case.match):
            restore(url, name="hostile-copy")

    ran = calls.read_text().splitlines()
    assert any(line.startswith("image mount ") for line in ran), ran  # the one pass ran on this host
    handed = [line for line in ran if line.startswith(("container restore", "restore")) or "podman-import" in line]
    assert handed == [], ran
    assert list(staging.rglob("podman-import.tar*")) == [], "a tar for Podman was left in staging"
    assert lab.snapshot_of_host() == (names, images, sentinel)
    assert lab.host.podman("container", "exists", "hostile-copy", check=False).returncode == 1

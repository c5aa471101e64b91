"""Podman's self-description (``podman info``, the reference container's OCI spec) is learnt once
per Podman configuration and read back from ferry's cache on later runs, identical to a fresh
answer; a change of configuration, or a cache file anyone else could have written, is not used."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.runtime import host_cache
from ferry.runtime.host_settings import host_defaults
from ferry.runtime.podman import Podman
from tests.helpers import Host

pytestmark = [pytest.mark.root, pytest.mark.podman]


def _no_podman(*args: object, **kw: object) -> object:
    raise AssertionError("podman was run although the answer is cached")


def test_reference_spec_and_info_come_from_the_cache_and_match_a_fresh_answer(
    host: Host, staging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    podman = Podman(host.prefix)
    spec = podman.reference_spec(tmp_path)
    info = podman.host_info()
    assert spec["process"]["capabilities"]["bounding"], spec
    assert spec["linux"]["maskedPaths"] and spec["linux"]["resources"]["devices"], spec
    assert "hostname" not in spec and "mounts" not in spec  # nothing of the throwaway container itself
    assert info["host"]["ociRuntime"]["name"] == "runc"
    cached = sorted(p.name.split("-")[0] + "-" + p.name.split("-")[1] for p in (staging / "cache").glob("*.json"))
    assert cached == ["podman-info", "reference-spec"]

    fresh_spec, fresh_info = host_defaults(podman._reference_spec(tmp_path)), podman._read_info()
    assert fresh_spec == spec
    assert fresh_info == info

    with monkeypatch.context() as m:  # a new Podman object (a later run): nothing runs podman
        m.setattr(Podman, "_run", _no_podman)
        again = Podman(host.prefix)
        assert again.reference_spec(tmp_path) == spec
        assert again.host_info() == info
        assert again.store_info() == podman.store_info()


def test_a_changed_configuration_or_a_foreign_cache_file_is_not_used(
    host: Host, staging: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "containers.conf"
    conf.write_text("[containers]\n")
    monkeypatch.setenv("CONTAINERS_CONF", str(conf))
    podman = Podman(host.prefix)
    first = podman.host_info()
    before = host_cache.fingerprint(host.prefix)
    conf.write_text("[containers]\n# edited\n")
    assert host_cache.fingerprint(host.prefix) != before
    calls: list[list[str]] = []
    real_run = Podman._run

    def counting(self: Podman, args: list[str], **kw: object) -> object:
        calls.append(args)
        return real_run(self, args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Podman, "_run", counting)
    assert Podman(host.prefix).host_info() == first
    assert [a[0] for a in calls] == ["info"]  # the edit made it ask Podman again

    entry = staging / "cache" / f"podman-info-{host_cache.fingerprint(host.prefix)[:32]}.json"
    entry.chmod(0o666)  # group/world-writable: someone else could have written it
    calls.clear()
    Podman(host.prefix).host_info()
    assert [a[0] for a in calls] == ["info"]
    entry.write_text("{not json")
    calls.clear()
    assert Podman(host.prefix).host_info() == first
    assert [a[0] for a in calls] == ["info"]

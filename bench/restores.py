"""Benchmark 2: restore from a local store, ferry's flow vs `podman container restore --import`.

The primary baseline imports the very archive ferry restores (ferry writes Podman's layout);
a second row imports Podman's own export of the identical container.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BenchHost, unique
from flows.restore import restore


@dataclass
class RestoreData:
    ferry: list[float] = field(default_factory=list)
    podman_same: list[float] = field(default_factory=list)  # podman import of ferry's archive
    podman_own: list[float] = field(default_factory=list)  # podman import of podman's export


def local_path(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def _ferry(host: BenchHost, url: str, export: Path, name: str) -> None:
    restore(archive=url, name=name)


def _podman_same(host: BenchHost, url: str, export: Path, name: str) -> None:
    host.check("container", "restore", "--import", str(local_path(url)), "--name", name)


def _podman_own(host: BenchHost, url: str, export: Path, name: str) -> None:
    host.check("container", "restore", "--import", str(export), "--name", name)


def run(host: BenchHost, archives: list[tuple[str, Path]]) -> RestoreData:
    data = RestoreData()
    runs = [(data.ferry, _ferry), (data.podman_same, _podman_same), (data.podman_own, _podman_own)]
    for rep, (url, export) in enumerate(archives):
        for sink, fn in runs if rep % 2 == 0 else runs[::-1]:
            name = unique("r")
            start = time.perf_counter()
            fn(host, url, export, name)
            sink.append(time.perf_counter() - start)
            host.remove(name)
        export.unlink(missing_ok=True)
        print(f"  restore rep {rep + 1}: ferry {data.ferry[-1]:.2f} s, podman {data.podman_same[-1]:.2f} s")
    return data

"""Stage 0, inspect: which container, which image, and this host's runtime versions."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from ferry.archive.manifest import Source
from ferry.runtime import ContainerInfo, Podman


@dataclass(frozen=True)
class Subject:
    info: ContainerInfo
    source: Source


def inspect(container: str, runtime: Podman | None = None) -> Subject:
    runtime = runtime or Podman()
    return Subject(runtime.inspect(container), runtime.source())


@task(name="inspect", retries=0)
def inspect_task(container: str) -> Subject:
    return inspect(container)

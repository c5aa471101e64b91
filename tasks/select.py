"""Select (nightly, first): which containers to snapshot (names and/or a label selector)."""

from __future__ import annotations

from prefect import task

from ferry.errors import UsageError
from ferry.runtime import Runtime, current


def select(names: list[str], label: str | None, runtime: Runtime | None = None) -> list[str]:
    if not names and not label:
        raise UsageError("Name the containers to snapshot, or give a label selector (e.g. ferry.backup=nightly).")
    runtime = runtime or current()
    return list(dict.fromkeys([*names, *(runtime.running_containers(label) if label else [])]))


@task(name="select", retries=0)
def select_task(names: list[str], label: str | None) -> list[str]:
    return select(names, label)

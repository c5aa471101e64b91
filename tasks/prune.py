"""Nightly last stage, prune: apply the retention policy to the store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import task

from storage.options import resolve
from storage.store import ArchiveStore


def prune(
    store_url: str,
    containers: list[str],
    keep: int | None,
    older_than_days: int | None,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
) -> list[str]:
    store = ArchiveStore(store_url, resolve(storage_options, storage_secret))
    older = timedelta(days=older_than_days) if older_than_days else None
    deleted: list[str] = []
    for name in containers:
        deleted += [e.url for e in store.prune(keep=keep, older_than=older, container=name)]
    return deleted


@task(name="prune", retries=2, retry_delay_seconds=[2, 10])
def prune_task(
    store_url: str,
    containers: list[str],
    keep: int | None,
    older_than_days: int | None,
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
) -> list[str]:
    return prune(store_url, containers, keep, older_than_days, storage_options, storage_secret)

"""Prune (nightly, last): apply the retention policy to the store."""

from __future__ import annotations

from datetime import timedelta

from prefect import task

from storage.ref import StoreRef


def prune(ref: StoreRef, containers: list[str], keep: int | None, older_than_days: int | None) -> list[str]:
    store = ref.open()
    older = timedelta(days=older_than_days) if older_than_days else None
    deleted: list[str] = []
    for name in containers:
        deleted += [e.url for e in store.prune(keep=keep, older_than=older, container=name)]
    return deleted


@task(name="prune", retries=2, retry_delay_seconds=[2, 10])
def prune_task(ref: StoreRef, containers: list[str], keep: int | None, older_than_days: int | None) -> list[str]:
    return prune(ref, containers, keep, older_than_days)

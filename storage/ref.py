"""Which store, as a value: its URL, its non-secret fsspec options and the NAME of the Prefect
Secret block holding its credentials.

Tasks take a :class:`StoreRef` and open the store with :meth:`StoreRef.open`, the one place an
:class:`~storage.store.ArchiveStore` is built from flow parameters. It is a task input, so it is
part of persisted results and cache keys (hashed from its fields): it never holds a secret itself,
only the name of the block that does, resolved each time the store is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from storage.options import resolve
from storage.store import ArchiveStore


@dataclass(frozen=True)
class StoreRef:
    url: str
    #: fsspec options shown as flow parameters (an endpoint, a region): no credentials
    storage_options: dict[str, Any] | None = field(default=None, hash=False)
    #: the name of a Prefect Secret block with credentials (a JSON object of fsspec options)
    storage_secret: str | None = None

    def options(self) -> dict[str, Any]:
        """The fsspec options to use: environment, then ``storage_options``, then the Secret block's."""
        return resolve(self.storage_options, self.storage_secret)

    def open(self) -> ArchiveStore:
        return ArchiveStore(self.url, self.options())

    def at(self, url: str) -> StoreRef:
        """The same options and credentials for another URL (e.g. the store an archive lives in)."""
        return replace(self, url=url)


def store_of(archive_url: str) -> str:
    """The store an archive URL lives in: ``<store>/<container>/<archive>``."""
    return archive_url.rstrip("/").rsplit("/", 2)[0]

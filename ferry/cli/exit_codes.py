"""The ``ferry`` command's exit statuses (README: Exit codes). :func:`ferry.cli.main` maps every
error to one of them, once, from the :mod:`ferry.errors` hierarchy."""

from __future__ import annotations

from ferry.errors import (
    ArchiveError,
    ArchiveNotFoundError,
    ContainerNotFoundError,
    StoreError,
    UsageError,
)

OK = 0
#: A runtime failure (podman, CRIU), a failed host check, or anything unforeseen.
FAILURE = 1
#: Bad arguments or configuration: nothing was done.
USAGE = 2
#: No such container, archive or store.
NOT_FOUND = 3
#: The archive failed an integrity, safety or trust (signature) check, or `inspect` found a failed check.
REFUSED = 4
#: The store cannot be reached, or access to it is denied.
STORE = 5
INTERRUPTED = 130

#: ``(status, meaning)`` in README's order.
TABLE = (
    (OK, "success"),
    (FAILURE, "runtime failure (podman, CRIU), a failed host check, or an unforeseen error"),
    (USAGE, "usage: bad arguments or configuration; nothing was done"),
    (NOT_FOUND, "not found: no such container, archive or store"),
    (REFUSED, "refused: the archive fails an integrity, safety or signature check"),
    (STORE, "the store is unreachable or access is denied"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)


def for_error(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, UsageError):
        return USAGE
    if isinstance(exc, ContainerNotFoundError | ArchiveNotFoundError):
        return NOT_FOUND
    if isinstance(exc, ArchiveError):
        return REFUSED
    if isinstance(exc, StoreError):
        return STORE
    return FAILURE

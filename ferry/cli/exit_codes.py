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

#: ``(status, short meaning)``, as ``ferry --help`` lists them.
TABLE = (
    (OK, "ok"),
    (FAILURE, "runtime failure"),
    (USAGE, "usage"),
    (NOT_FOUND, "not found"),
    (REFUSED, "integrity or trust refusal"),
    (STORE, "store unreachable or denied"),
    (INTERRUPTED, "interrupted"),
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

"""The runtime tasks use when none is passed: the host's Podman, unless one is installed for the
duration of a ``with installed(...)`` block (unit tests run whole flows against a fake this way)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ferry.runtime.podman import Podman
from ferry.runtime.protocol import Runtime

_installed: list[Runtime] = []


def current() -> Runtime:
    return _installed[-1] if _installed else Podman()


@contextlib.contextmanager
def installed(runtime: Runtime) -> Iterator[Runtime]:
    _installed.append(runtime)
    try:
        yield runtime
    finally:
        _installed.remove(runtime)

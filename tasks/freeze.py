"""Freeze: hold every process of the container still while diff and dump run.

Memory and root file-system must be captured at the same instant; freezing the container's
cgroup first, then taking the diff, then the CRIU dump, then thawing, guarantees it (Podman
before 6.0 took the diff after the dump, with the container already running again).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from ferry.errors import ContainerStateError
from ferry.runtime import ContainerInfo, Runtime, current

log = logging.getLogger("ferry.freeze")


@contextlib.contextmanager
def frozen(info: ContainerInfo, *, skip: bool = False, runtime: Runtime | None = None) -> Iterator[Path | None]:
    """Freeze the container for the duration of the block; always thaw on the way out.

    ``skip``: the run being retried already dumped the container; its diff and dump come from
    Prefect's cache, and the container may well be stopped by now."""
    if skip:
        yield None
        return
    runtime = runtime or current()
    info = runtime.inspect(info.id)  # now, not when the run started: a retry may come much later
    if info.state != "running":
        raise ContainerStateError(
            f"Container {info.name!r} is {info.state}, not running: there is nothing to "
            "checkpoint. Start it first, or restore it from an earlier snapshot."
        )
    knob = runtime.freeze(info)
    try:
        yield knob
    finally:
        runtime.thaw(knob)
        log.debug("thawed %s", info.name)

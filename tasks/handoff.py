"""A migration's hand-off: the target's restore is started before the source dumps, and waits, ready.

``ferry-migrate`` starts the target host's restore run first, with a hand-off name (a Prefect
Variable, ``ferry-handoff-<migration run id>``). That run gets ready while the container still
runs on the source: its process started and its imports done, a staging directory made, this
host's Podman facts cached, the container's name checked free. It then writes READY into the
Variable and waits. Only when READY is there does the migration start the source's snapshot.
The snapshot run writes where its archive will be (COMING, with the URL) as soon as the dump has
opened it, in the background while CRIU dumps; the waiting restore then watches the store for the
archive's sidecar, which the publish stage writes last, and goes on the moment it is there. The
snapshot also writes HANDED after publishing, for a restore that missed COMING. So the downtime no
longer includes a worker noticing a new run, starting a process and importing Prefect, nor a
Prefect Variable written after the archive is published (measured at up to 2 s on a Prefect
server busy recording the runs' task states: bench/results.md, table 9). If the snapshot fails,
the migration writes ABORT and the waiting restore ends without touching anything.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.variables import Variable

from ferry import progress
from ferry.errors import ContainerStateError, HandoffAborted, StoreError
from ferry.runtime import Runtime, current
from storage.reading import published
from storage.ref import StoreRef

log = logging.getLogger("ferry.handoff")

PREFIX = "ferry-handoff-"
WAITING = "waiting"  # the migration opened the hand-off; the target's restore is starting
READY = "ready"  # the target's restore is ready and waits for the archive
COMING = "coming"  # the snapshot's dump opened the archive: "url" names where it will be published
HANDED = "handed-over"  # the snapshot published the archive: "url" names it
ABORT = "abort"  # the migration called it off
#: How often the waiting restore looks at the Variable: the hand-off's share of the downtime.
POLL_S = 0.1


def variable(token: str) -> str:
    """The Variable a migration's hand-off goes through (Prefect allows [a-z0-9_-] in its names)."""
    return PREFIX + "".join(c if c.isalnum() or c in "-_" else "-" for c in token.lower())[:200]


def put(token: str, state: str, **fields: str) -> None:
    Variable.set(variable(token), {"state": state, **fields}, overwrite=True)


def peek(token: str) -> dict[str, str]:
    """The hand-off's state and fields; empty once the migration withdrew it (or never opened it)."""
    value = Variable.get(variable(token), default=None)
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def state(token: str) -> str:
    return peek(token).get("state", "")


def withdraw(token: str) -> None:
    Variable.unset(variable(token))


def get_ready(token: str, name: str | None, staging: Path, runtime: Runtime | None = None) -> None:
    """Everything a restore on this host can do before it has the archive: refuse a taken name
    (before the source stops anything) and have Podman's facts cached for the rebuild."""
    runtime = runtime or current()
    name = name or peek(token).get("container")
    if name and runtime.exists(name):
        raise ContainerStateError(
            f"A container named {name!r} already exists on this host, so the migrated one could not be "
            "restored here; nothing was stopped on the source. Remove or rename it, or migrate under "
            "another name (new_name)."
        )
    runtime.store_info()
    runtime.reference_spec(staging)


def announce(token: str, url: str) -> threading.Thread:
    """Say COMING with the archive's URL, in a thread: the dump goes on meanwhile, and joins it
    before it ends (so a migration's ABORT is never overwritten by a late COMING)."""

    def say() -> None:
        try:
            put(token, COMING, url=url)
        except Exception as exc:  # the HANDED after the publish still tells the restore
            log.warning("could not announce %s to the waiting restore: %s", url, exc)

    thread = threading.Thread(target=say, name="ferry-announce", daemon=True)
    thread.start()
    return thread


def await_archive(token: str, ref: StoreRef | None = None, poll_s: float = POLL_S) -> str:
    """Say READY, then wait for the archive: its sidecar in the store once the snapshot says
    COMING, or the snapshot's HANDED (bounded by the flow's timeout, and by the migration, which
    cancels a run it gives up on)."""
    opened = peek(token)
    if opened.get("state") != WAITING:
        raise HandoffAborted(f"The migration's hand-off {variable(token)} is not open: nothing was restored here.")
    put(token, READY, container=opened.get("container", ""))
    options: dict[str, Any] | None = None  # the store's, resolved once (a Secret block is an API call)
    with progress.stage("await-archive", variable(token)):
        while True:
            current = peek(token)
            said, url = current.get("state"), current.get("url", "")
            if said == HANDED and url:
                return url
            if said == COMING and url:
                if options is None and ref is not None:
                    options = ref.options()
                if _published(url, options):
                    return url
            if said not in (READY, COMING):  # called off, or withdrawn by a migration that ended
                raise HandoffAborted(
                    "The migration was called off before the archive was handed over (its snapshot did not "
                    "complete): nothing was restored on this host."
                )
            time.sleep(poll_s)


def _published(url: str, options: dict[str, Any] | None) -> bool:
    try:
        return published(url, options)
    except StoreError as exc:  # a blip of the store: look again, HANDED comes anyway
        log.debug("cannot look for %s yet: %s", url, exc)
        return False


@task(name="get-ready", retries=0, cache_policy=NO_CACHE)
def get_ready_task(token: str, name: str | None, staging: Path) -> None:
    get_ready(token, name, staging)


@task(name="await-archive", retries=0, cache_policy=NO_CACHE)
def await_archive_task(token: str, ref: StoreRef | None = None) -> str:
    return await_archive(token, ref)


def hand_over(token: str, url: str) -> None:
    """The snapshot's last word in a migration: the archive's URL, for a waiting restore that missed
    COMING. Never raises: the archive is published, a restore may already be restoring it, and a
    snapshot failing now would roll the container back on the source (running it twice)."""
    try:
        put(token, HANDED, url=url)
    except Exception as exc:
        log.warning("could not hand %s over (%s); the waiting restore finds it in the store", url, exc)


@task(name="hand-over", retries=0, cache_policy=NO_CACHE)
def hand_over_task(token: str, url: str) -> None:
    hand_over(token, url)

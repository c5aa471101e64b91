"""What a run tells the operator: stage timings and Prefect artifacts (markdown, tables, progress).

Artifacts are best effort: a run that cannot publish one still does its job. Nothing here ever
includes storage options or credentials, only URLs, names and numbers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from ferry.names import artifact_key

log = logging.getLogger("ferry.report")


class Timings:
    """Wall time of each stage, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.monotonic() - start

    def table(self) -> str:
        rows = "\n".join(f"| {stage} | {secs:.2f} s |" for stage, secs in self.seconds.items())
        return f"| stage | time |\n|---|---|\n{rows}\n| **total** | {sum(self.seconds.values()):.2f} s |"


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def warn(logger: logging.Logger, message: str) -> None:
    """A warning the operator must see: on the CLI's console (the ``ferry`` logger) and, inside a
    run, in the run's logs in Prefect."""
    logger.warning(message)
    if _in_run():
        from prefect import get_run_logger

        with contextlib.suppress(Exception):
            get_run_logger().warning(message)


def host() -> str:
    """This host's name as ferry's deployments know it: the deployment's name (``ferry-snapshot/<host>``)
    in a deployment run, else FERRY_HOST, else the short host name."""
    try:
        from prefect.runtime import deployment

        name = deployment.name if _in_run() else None
    except Exception:  # no deployment context
        name = None
    return str(name or os.environ.get("FERRY_HOST") or socket.gethostname().split(".")[0])


def host_key(*parts: str) -> str:
    """An artifact key that names this host: hosts sharing a Prefect server keep separate histories."""
    return "-".join((parts[0], host(), *parts[1:]))


def markdown(title: str, body: str, key: str) -> None:
    if not _in_run():
        return
    from prefect.artifacts import create_markdown_artifact

    try:
        create_markdown_artifact(markdown=f"# {title}\n\n{body}", key=artifact_key(key), description=title)
    except Exception as exc:  # artifacts never fail a run
        log.warning("could not publish the %s artifact: %s", key, exc)


#: The description of the link artifact a migration leaves: ``ferry migrate`` reads the archive's URL from it.
ARCHIVE_LINK = "The archive the container was migrated with"


def link(url: str, description: str) -> None:
    if not _in_run():
        return
    from prefect.artifacts import create_link_artifact

    try:
        create_link_artifact(link=url, link_text=url, description=description)
    except Exception as exc:  # artifacts never fail a run
        log.warning("could not publish the %s link artifact: %s", description, exc)


def linked_url(data: str) -> str:
    """The URL in a link artifact's data (``[text](url)``)."""
    return data.rsplit("](", 1)[1][:-1] if data.endswith(")") and "](" in data else ""


def table(rows: list[dict[str, Any]], key: str, description: str) -> None:
    if not _in_run():
        return
    from prefect.artifacts import create_table_artifact

    try:
        create_table_artifact(table=rows, key=artifact_key(key), description=description)
    except Exception as exc:
        log.warning("could not publish the %s artifact: %s", key, exc)


class Progress:
    """A Prefect progress artifact for a long transfer, updated at most once a second."""

    def __init__(self, total: int, description: str) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._id: Any = None
        self._last = 0.0
        if not _in_run() or total < int(os.environ.get("FERRY_PROGRESS_MIN_BYTES", str(16 << 20))):
            return
        from prefect.artifacts import create_progress_artifact

        try:
            self._id = create_progress_artifact(progress=0.0, description=description)
        except Exception as exc:
            log.warning("could not publish a progress artifact: %s", exc)

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if self._id is not None and (now - self._last >= 1.0 or self.done >= self.total):
            self._last = now
            self._update()

    def finish(self) -> None:
        self.done = self.total
        if self._id is not None:
            self._update()

    def _update(self) -> None:
        from prefect.artifacts import update_progress_artifact

        try:
            update_progress_artifact(artifact_id=self._id, progress=min(100.0, 100.0 * self.done / self.total))
        except Exception as exc:
            log.warning("could not update a progress artifact: %s", exc)

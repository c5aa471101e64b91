"""A migration's hand-off (tasks/handoff.py) on a real (test) Prefect server and a local store:
the dump says where the archive will be while CRIU dumps, and the waiting restore goes on when
the archive's sidecar is in the store, not when a Variable is written after the publish."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ferry.errors import HandoffAborted
from storage.ref import StoreRef
from storage.store import SIDECAR_SUFFIX, ArchiveStore
from tasks.dump import ArchiveJob, dump
from tasks.handoff import ABORT, COMING, READY, WAITING, await_archive, peek, put, withdraw
from tasks.inspect import inspect
from tasks.publish import publish
from tasks.rootfs_diff import rootfs_diff
from tests.fakes import FakeRuntime
from tests.helpers import wait_for

pytestmark = pytest.mark.usefixtures("prefect_harness", "staging")


class Waiting(threading.Thread):
    """A restore waiting for its archive, in a thread: its answer or its error."""

    def __init__(self, token: str, ref: StoreRef) -> None:
        super().__init__(daemon=True)
        self.token, self.ref = token, ref
        self.url = ""
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.url = await_archive(self.token, self.ref, poll_s=0.02)
        except BaseException as exc:
            self.error = exc


def _open(token: str) -> None:
    put(token, WAITING, container="app")


def test_the_restore_goes_on_once_the_announced_archive_is_published(tmp_path: Path) -> None:
    token = f"t-{time.monotonic_ns()}"
    ref = StoreRef(f"file://{tmp_path}/store")
    url = f"{ref.url}/app/archive.tar.zst"
    _open(token)
    waiting = Waiting(token, ref)
    wait_for(lambda: peek(token).get("state") == READY, what="the restore to say READY")
    put(token, COMING, url=url)
    time.sleep(0.3)  # many polls: announced, not published
    assert waiting.is_alive() and not waiting.url
    sidecar = Path(url.removeprefix("file://") + SIDECAR_SUFFIX)
    sidecar.parent.mkdir(parents=True)
    sidecar.write_text("{}")
    waiting.join(10)
    assert waiting.error is None and waiting.url == url
    withdraw(token)


def test_an_abort_after_the_announcement_calls_the_restore_off(tmp_path: Path) -> None:
    token = f"t-{time.monotonic_ns()}"
    ref = StoreRef(f"file://{tmp_path}/store")
    _open(token)
    waiting = Waiting(token, ref)
    wait_for(lambda: peek(token).get("state") == READY, what="the restore to say READY")
    put(token, COMING, url=f"{ref.url}/app/archive.tar.zst")
    put(token, ABORT)
    waiting.join(10)
    assert isinstance(waiting.error, HandoffAborted) and not waiting.url
    withdraw(token)


def test_the_dump_announces_where_its_archive_will_be_published(fake: FakeRuntime, ref: StoreRef, work: Path) -> None:
    token = f"t-{time.monotonic_ns()}"
    _open(token)
    subject = inspect("app", ref, runtime=fake)
    job = ArchiveJob(subject, rootfs_diff(subject.info, work, runtime=fake), "zstd", ref, token)
    dumped = dump(subject.info, work, False, runtime=fake, job=job)
    assert dumped.archive is not None
    said = peek(token)  # joined before the dump returned: never later than a migration's ABORT
    assert said == {"state": COMING, "url": ArchiveStore(ref.url).url_of(dumped.archive.key)}
    assert publish(dumped.archive, ref) == said["url"]
    withdraw(token)


def test_a_failed_hand_over_never_fails_the_published_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import handoff

    def down(*_: object, **__: object) -> None:
        raise ConnectionError("the Prefect API is unreachable")

    monkeypatch.setattr(handoff, "put", down)
    handoff.hand_over("t-unreachable", "file:///store/app/archive.tar.zst")  # logs, does not raise

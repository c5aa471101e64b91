"""Progress reporting: the stage reporter (ferry/progress.py) and the terminal sinks the CLI
installs (ferry/cli/terminal.py), against fake streams; the flows' stages against a recording sink."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry import progress
from ferry.cli import _parser, terminal
from ferry.progress import Stage, human_bytes, printable, summary

HOSTILE = "web\x1b]0;owned\x07\x1b[2J\x9b31m\u202etxt.exe\x7f\n"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def started(self, stage: Stage) -> None:
        self.events.append(("started", stage.name, stage.done))

    def advanced(self, stage: Stage) -> None:
        self.events.append(("advanced", stage.name, stage.done))

    def finished(self, stage: Stage, error: BaseException | None) -> None:
        self.events.append(("failed" if error else "finished", stage.name, stage.done))

    def stages(self, event: str = "finished") -> list[str]:
        return [name for kind, name, _ in self.events if kind == event]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    previous = progress.install(rec)
    yield rec
    progress.install(previous)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_stage_starts_advances_and_finishes(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "NOTIFY_INTERVAL_S", 0.0)
    with progress.stage("download", "x.tar.zst", total=3) as stage:
        stage.advance(1)
        assert stage.reader(io.BytesIO(b"ab")).read() == b"ab"
    assert recorder.events == [
        ("started", "download", 0),
        ("advanced", "download", 1),
        ("advanced", "download", 3),
        ("finished", "download", 3),
    ]


def test_a_failing_stage_is_reported_and_the_error_passes_through(recorder: Recorder) -> None:
    with pytest.raises(RuntimeError, match="boom"), progress.stage("dump"):
        raise RuntimeError("boom")
    assert recorder.events == [("started", "dump", 0), ("failed", "dump", 0)]


def test_advances_reach_the_sink_at_most_every_interval(recorder: Recorder) -> None:
    with progress.stage("verify", total=1 << 30) as stage:
        for _ in range(10_000):
            stage.advance(16 << 10)
    assert len(recorder.stages("advanced")) <= 2  # 10 000 chunks in far less than a second
    assert recorder.events[-1] == ("finished", "verify", 10_000 * (16 << 10))


def test_without_a_sink_stages_cost_nothing_and_say_nothing() -> None:
    previous = progress.install(None)
    try:
        with progress.stage("dump") as stage:
            stage.advance(5)
        assert stage.done == 5 and stage.ended_at is not None
    finally:
        progress.install(previous)


def test_printable_escapes_control_format_and_bidi_characters() -> None:
    out = printable(HOSTILE)
    assert out == "web\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202etxt.exe\\x7f\\x0a"
    assert all(ch.isprintable() for ch in out)
    assert printable("a" * 300, limit=10) == "a" * 10 + "..."


def test_summary_lines() -> None:
    dump = Stage("dump", started_at=100.0, ended_at=102.1)
    assert summary(dump) == "dump 2.1 s"
    upload = Stage("upload", total=None, streams=True, done=int(123.4 * (1 << 20)), started_at=0.0, ended_at=1.25)
    assert summary(upload) == "upload 123.4 MiB 1.2 s 98.7 MiB/s"
    assert summary(dump, RuntimeError()) == "dump failed after 2.1 s"
    archive = Stage("archive", total=10, done=10, note="1.0 KiB stored", started_at=0.0, ended_at=2.0)
    assert summary(archive) == "archive 10 B 2.0 s 5 B/s (1.0 KiB stored)"
    assert human_bytes(3 << 30) == "3.0 GiB"


def test_plain_lines_when_stderr_is_not_a_terminal() -> None:
    out = io.StringIO()
    sink = terminal.for_stream(out)
    assert isinstance(sink, terminal.PlainLines)
    previous = progress.install(sink)
    try:
        with progress.stage("download", HOSTILE, total=2 << 20) as stage:
            stage.advance(2 << 20)
        with pytest.raises(OSError), progress.stage("restore", "copy"):
            raise OSError("no")
    finally:
        progress.install(previous)
    lines = out.getvalue().splitlines()
    assert lines[0] == "download started: web\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202etxt.exe\\x7f\\x0a, 2.0 MiB"
    assert lines[1].startswith("download 2.0 MiB ") and lines[1].endswith("/s")
    assert lines[2:] == ["restore started: copy", lines[3]] and lines[3].startswith("restore failed after ")
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_live_line_on_a_terminal_escapes_names_and_leaves_one_line_per_stage() -> None:
    out = FakeTerminal()
    sink = terminal.for_stream(out)
    assert isinstance(sink, terminal.LiveLines)
    log = logging.getLogger("ferry")
    handler = logging.StreamHandler(out)
    log.addHandler(handler)
    previous = progress.install(sink)
    try:
        with progress.stage("archive", HOSTILE, total=4 << 20) as stage:
            stage.advance(1 << 20)
            time.sleep(0.3)  # rich redraws ten times a second
            logging.getLogger("ferry.upload").warning("the archive of %s is UNSIGNED", HOSTILE)
            assert handler.stream is not out, "log lines are not routed above the live line"
            stage.advance(3 << 20)
        with progress.stage("dump"):
            pass
    finally:
        progress.install(previous)
        log.removeHandler(handler)
    text = out.getvalue()
    assert handler.stream is out
    assert "1.0 MiB/4.0 MiB" in text, text  # a live update, part way through
    assert "web\\x1b]0;owned" in text and "\x1b]0;owned" not in text and "\x1b[2J" not in text
    assert "\x9b" not in text and "\u202e" not in text and "\x07" not in text
    assert "the archive of web\\x1b]0;owned" in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", text).replace("\r", "\n").split("\n")
    finals = [line for line in plain if re.fullmatch(r"(archive 4\.0 MiB|dump) [0-9.]+ s.*", line)]
    assert [f.split(" ")[0] for f in finals] == ["archive", "dump"], text


def test_quiet_before_or_after_the_subcommand() -> None:
    parser = _parser()
    for argv, quiet in (
        (["snapshot", "web", "--to", "file:///s"], False),
        (["-q", "snapshot", "web", "--to", "file:///s"], True),
        (["snapshot", "web", "--to", "file:///s", "--quiet"], True),
        (["restore", "-q", "file:///s/a.tar.zst"], True),
        (["--quiet", "ls", "file:///s"], True),
    ):
        args = parser.parse_args(argv)
        assert args.quiet is quiet, argv
        sink = terminal.install(args, io.StringIO())
        try:
            assert (sink is None) is quiet and progress._sink is sink
        finally:
            progress.install(None)


@pytest.mark.usefixtures("prefect_harness", "staging")
def test_the_flows_report_every_long_stage(recorder: Recorder, tmp_path: Path) -> None:
    from ferry.runtime import Changes, installed
    from flows.restore import restore
    from flows.snapshot import snapshot
    from tests.fakes import IMAGE_ID, FakeRuntime

    fake = FakeRuntime(tmp_path / "fake")
    fake.add("app", files={"/data": None, "/data/new": b"x" * 100_000}, changes=Changes(added=("/data/new",)))
    store = f"file://{tmp_path}/store"
    with installed(fake):
        snapshot("app", store, with_image=True)
        assert recorder.stages() == [
            "inspect", "save-image", "upload-image", "rootfs-diff", "dump", "archive", "publish"
        ]  # fmt: skip
        sent = {name: n for kind, name, n in recorder.events if kind == "finished"}
        assert sent["rootfs-diff"] == 100_000 and sent["archive"] > 100_000 and sent["upload-image"] > 0
        recorder.events.clear()
        del fake.images[IMAGE_ID]  # as on a fresh host
        restore(store, latest="app", name="copy")
    assert recorder.stages() == ["locate", "download-image", "load-image", "receive", "restore"]
    done = {name: n for kind, name, n in recorder.events if kind == "finished"}
    from storage.store import ArchiveStore

    assert done["receive"] == ArchiveStore(store).archives("app")[0].sidecar.size > 0  # every stored byte, once
    assert done["download-image"] == sent["upload-image"]

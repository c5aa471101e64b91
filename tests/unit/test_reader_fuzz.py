"""Fuzzing the archive reader: a damaged archive verifies exactly as before or is refused with an
ArchiveError, never another exception; and the hostile corpus, built on a forged base, is refused
case by case without podman."""

from __future__ import annotations

import io
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferry.archive.compression import COMPRESSIONS, Compression
from ferry.archive.manifest import Sidecar
from ferry.archive.reader import Report, rewrite, verify
from ferry.errors import ArchiveError
from tasks.prepare_import import ImageLinkCheck
from tests import hostile_corpus as hc

BASE = hc.forged_base()
ARCHIVES: dict[Compression, bytes] = {
    c: hc.pack([*BASE.members, hc.manifest_member(BASE.recomputed())], c) for c in COMPRESSIONS
}
REPORTS: dict[Compression, Report] = {c: verify(io.BytesIO(data)) for c, data in ARCHIVES.items()}
SIDECARS: dict[Compression, Sidecar] = {
    c: Sidecar.from_json(hc.sidecar_json("a", data, c, BASE.recomputed())) for c, data in ARCHIVES.items()
}


@st.composite
def reordered(draw: st.DrawFn, compression: Compression) -> bytes:
    members = [*BASE.members, hc.manifest_member(BASE.recomputed())]
    order = draw(st.permutations(range(len(members))))
    return hc.pack([members[i] for i in order], compression)


def _ops(size: int) -> st.SearchStrategy[tuple[Any, ...]]:
    pos = st.integers(0, max(size - 1, 0))
    return st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(1, 255)),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), pos, st.integers(1, 600)),
    )


def _apply(data: bytes, op: tuple[Any, ...]) -> bytes:
    kind, pos, *rest = op
    pos = min(pos, len(data))
    if kind == "flip" and pos < len(data):
        return data[:pos] + bytes([data[pos] ^ rest[0]]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + rest[0] + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + rest[0] :]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Compression, bytes]:
    compression: Compression = draw(st.sampled_from(COMPRESSIONS))
    data = draw(reordered(compression)) if draw(st.booleans()) else ARCHIVES[compression]
    for _ in range(draw(st.integers(0 if data != ARCHIVES[compression] else 1, 3))):
        data = _apply(data, draw(_ops(len(data))))
    return compression, data


@contextmanager
def nothing_written() -> Iterator[None]:
    """Runs with the working and temporary directories pointed at an empty one; checks it stays so."""
    old_cwd, old_tmp = Path.cwd(), tempfile.tempdir
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            os.chdir(old_cwd)
            tempfile.tempdir = old_tmp
        assert os.listdir(scratch) == [], "the reader left files behind"


def _verify_or_refuse(data: bytes, sidecar: Sidecar | None) -> Report | None:
    try:
        return verify(io.BytesIO(data), sidecar=sidecar)
    except ArchiveError:
        return None


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_damaged_archives_verify_identically_or_are_refused(sample: tuple[Compression, bytes]) -> None:
    compression, data = sample
    with nothing_written():
        report = _verify_or_refuse(data, None)
        if report is not None:
            assert report.members == REPORTS[compression].members
            sink = io.BytesIO()
            rewritten = rewrite(io.BytesIO(data), sink, expected=report)
            assert rewritten.members == report.members
            with tarfile.open(fileobj=io.BytesIO(sink.getvalue()), mode="r:") as tar:
                assert hc.MANIFEST in tar.getnames()
        with_sidecar = _verify_or_refuse(data, SIDECARS[compression])
        assert with_sidecar is None or data == ARCHIVES[compression], "a changed archive matched its sidecar"


def test_the_fuzzed_bases_are_valid() -> None:
    for compression, data in ARCHIVES.items():
        assert verify(io.BytesIO(data), sidecar=SIDECARS[compression]).members == REPORTS[compression].members


@pytest.mark.parametrize("name", list(hc.CASES))
def test_forged_corpus_is_refused_by_verify(name: str) -> None:
    case = hc.build(name, BASE, "/var/tmp/ferry-sentinel-unit")
    with nothing_written(), pytest.raises(case.error) as raised:
        sidecar = Sidecar.from_json(case.sidecar) if case.sidecar else None
        verify(io.BytesIO(case.data), sidecar=sidecar, require_manifest=not case.allow_unverified)
    assert re.search(case.match, str(raised.value)), str(raised.value)


@pytest.mark.parametrize("name", list(hc.IMAGE_LINK_CASES))
def test_forged_image_symlink_cases_are_refused_by_the_rewrite(name: str, tmp_path: Path) -> None:
    image = tmp_path / "image"
    (image / "data").mkdir(parents=True)
    (image / "data" / "link").symlink_to("/")
    case = hc.build(name, hc.forged_base(image_link=True), "/var/tmp/ferry-sentinel-unit")
    report = verify(io.BytesIO(case.data), sidecar=Sidecar.from_json(case.sidecar or b""))
    with pytest.raises(case.error, match=case.match):
        rewrite(io.BytesIO(case.data), io.BytesIO(), expected=report, check_diff_path=ImageLinkCheck(image))

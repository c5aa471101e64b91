"""ArchiveWriter's plumbing: the background hash thread gives hashlib's digests."""

from __future__ import annotations

import hashlib
import io
import tarfile

from ferry.archive.manifest import ContainerRef, Manifest, Source
from ferry.archive.streams import HashThread
from ferry.archive.writer import ArchiveWriter


def test_hash_thread_digests_match_hashlib_whatever_the_block_types() -> None:
    blocks = [b"a" * 5000, bytearray(b"b" * 3000), memoryview(b"c" * 70000), b""]
    with HashThread(depth=2) as thread:
        one, two = thread.sha256(), thread.sha256()
        for block in blocks:
            one.update(block)
        two.update(b"other")
        assert one.hexdigest() == hashlib.sha256(b"".join(bytes(b) for b in blocks)).hexdigest()
        assert two.hexdigest() == hashlib.sha256(b"other").hexdigest()


def test_archive_writer_digests_every_member_and_the_output() -> None:
    out = io.BytesIO()
    data = {"a": b"x" * 3_000_000, "b": b"", "c": bytes(range(256)) * 10}
    with ArchiveWriter(out, "none") as writer:
        for name, body in data.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            writer.add_stream(info, io.BytesIO(body))
        manifest = writer.write_manifest(
            Manifest(ContainerRef("x", "0" * 64), Source(), "stop", "2026-01-01T00:00:00Z")
        )
    assert {m.name: m.sha256 for m in manifest.members} == {n: hashlib.sha256(b).hexdigest() for n, b in data.items()}
    assert writer.digest is not None and writer.digest.sha256 == hashlib.sha256(out.getvalue()).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert tar.getnames() == ["a", "b", "c", "ferry-manifest.json"]

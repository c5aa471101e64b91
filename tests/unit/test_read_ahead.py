"""The read side of the store on its own: storage/reading.py's read-ahead."""

from __future__ import annotations

import io

import pytest

from ferry.errors import StoreError
from storage.reading import _ReadAhead


def test_read_ahead_returns_the_stream_as_it_is_and_its_failure_where_it_came() -> None:
    """Object stores are read a block ahead in a thread (storage/reading.py _ReadAhead)."""
    data = bytes(range(256)) * 40_000  # ~10 MiB: more than one block

    class Source:
        def __init__(self, fail_after: int | None = None) -> None:
            self.f, self.fail_after, self.reads = io.BytesIO(data), fail_after, 0

        def read(self, size: int = -1, /) -> bytes:
            self.reads += 1
            if self.fail_after is not None and self.reads > self.fail_after:
                raise StoreError("Cannot read s3://b/x: connection reset")
            return self.f.read(size)

    ahead = _ReadAhead(Source())  # type: ignore[arg-type]
    got = [ahead.read(n) for n in (0, 1, 511, 3 << 20, 5 << 20)] + [ahead.read()]
    assert b"".join(got) == data and ahead.read(10) == b""
    ahead.close()

    failing = _ReadAhead(Source(fail_after=1))  # type: ignore[arg-type]
    assert failing.read(1 << 20) == data[: 1 << 20]
    with pytest.raises(StoreError, match="connection reset"):
        failing.read()
    failing.close()

    early = _ReadAhead(Source())  # type: ignore[arg-type]
    early.read(10)
    early.close()  # the reader gave up part way (a refusal): the thread ends, nothing hangs

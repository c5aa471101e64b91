"""The one format for sizes and ages in the CLI's output."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ferry.humanize import age, size

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("n", "shown"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (35746, "34.9 KiB"), (12_900_000, "12.3 MiB")],
)
def test_size(n: int, shown: str) -> None:
    assert size(n) == shown


@pytest.mark.parametrize(
    ("stamp", "shown"),
    [
        ("2026-11-28T11:59:15.000Z", "45s ago"),
        ("2026-11-28T11:57:00Z", "3m ago"),
        ("2026-11-28T08:59:59.123Z", "3h ago"),
        ("2026-11-28T09:00:00.123Z", "2h ago"),
        ("2026-11-16T12:00:00Z", "12d ago"),
        ("2026-11-28T13:00:00Z", "in the future"),
        ("not a time", "?"),
    ],
)
def test_age(stamp: str, shown: str) -> None:
    assert age(stamp, NOW) == shown

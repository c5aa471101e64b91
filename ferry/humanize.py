"""The one way ferry shows sizes and ages to a person: ``12.3 MiB``, ``3h ago``."""

from __future__ import annotations

from datetime import UTC, datetime

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: int) -> str:
    """Bytes in binary units with one decimal: ``512 B``, ``12.3 MiB``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def parse_time(stamp: str) -> datetime | None:
    """An ISO 8601 time as ferry writes it (``...Z``); None when it does not parse."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(stamp: str, now: datetime | None = None) -> str:
    """How long ago ``stamp`` was, in its largest unit: ``45s ago``, ``3h ago``, ``12d ago``."""
    moment = parse_time(stamp)
    if moment is None:
        return "?"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit} ago"
    return f"{seconds}s ago"

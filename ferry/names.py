"""Names made safe for one use: a file name under ferry's staging root, a part of a store key,
a Prefect artifact key. One place, so each use gets the same rules."""

from __future__ import annotations


def file_name(name: str, *, limit: int = 64, fallback: str = "x", keep: str = "-_.") -> str:
    """``name`` with every character but letters, digits and ``keep`` replaced by ``_``, cut to
    ``limit``; ``fallback`` when nothing is left. Never contains ``/``, so never a path."""
    return "".join(c if c.isalnum() or c in keep else "_" for c in name)[:limit] or fallback


def artifact_key(text: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and single dashes, at most 100 characters."""
    cleaned = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return "-".join(p for p in cleaned.split("-") if p)[:100] or "ferry"

"""Bounded, unambiguous JSON for untrusted archive members.

Podman reads ``config.dump``, ``spec.dump`` and ``network.status`` with Go's encoding/json, which
matches object keys case-insensitively and keeps the *last* of duplicate keys. Python keeps the
last too, but compares keys exactly, so ``{"rootfsImageID": A, "ROOTFSIMAGEID": B}`` reads as A to
ferry and as B to Podman. Every object is therefore refused when two of its keys are equal ignoring
case. Size and nesting depth are bounded *before* parsing (a 100k-deep list would otherwise raise
RecursionError), and NaN/Infinity, which Go refuses, are refused here too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ferry.errors import MalformedMemberError, UnsafeArchiveError

#: Strings (with escapes) or a bracket; brackets inside strings are skipped with the string.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


def depth(data: bytes) -> int:
    """The deepest nesting of objects and lists in ``data`` (which need not be valid JSON)."""
    level = deepest = 0
    for match in _TOKENS.finditer(data):
        first = match.group()[0]
        if first == 0x22:  # a string
            continue
        if first in _OPEN:
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def loads(data: bytes, *, what: str, max_bytes: int = 4 << 20, max_depth: int = 32) -> Any:
    """Parse one untrusted JSON member, or raise :class:`UnsafeArchiveError` naming it."""
    if len(data) > max_bytes:
        raise UnsafeArchiveError(f"{what} is {len(data)} bytes; ferry reads at most {max_bytes} bytes of it.")
    nesting = depth(data)
    if nesting > max_depth:
        raise UnsafeArchiveError(f"{what} nests {nesting} levels deep; ferry accepts at most {max_depth}.")
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_unique(what), parse_constant=_constant(what))
    except UnicodeDecodeError as exc:
        raise MalformedMemberError(f"{what} is not valid JSON: it is not UTF-8 text.") from exc
    except json.JSONDecodeError as exc:
        raise MalformedMemberError(f"{what} is not valid JSON: {exc}.") from exc


def _unique(what: str):  # type: ignore[no-untyped-def]
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, str] = {}
        for key, _ in pairs:
            folded = key.casefold()
            if folded in seen:
                raise UnsafeArchiveError(
                    f"{what} has the key {key!r} twice (as {seen[folded]!r} and {key!r}); Podman reads "
                    "keys without regard to case and would take another value than ferry checked. Refusing it."
                )
            seen[folded] = key
        return dict(pairs)

    return hook


def _constant(what: str):  # type: ignore[no-untyped-def]
    def refuse(name: str) -> Any:
        raise UnsafeArchiveError(f"{what} holds {name}, which is not JSON.")

    return refuse

"""Typed reads from untrusted, already bounded JSON (see :mod:`ferry.archive.safejson`).

Keys are looked up the way Go's encoding/json finds them: without regard to case. Every reader
names the member and field in its error, so a refusal tells the operator exactly what was wrong.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from ferry.errors import UnsafeArchiveError

MAX_STRING = 64 << 10
MAX_LIST = 4096


class Fields:
    """One JSON object of a member, read key by key; remembers which keys were read."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise UnsafeArchiveError(f"{where} must be a JSON object.")
        self.where = where
        self._by_fold = {k.casefold(): k for k in value}
        self._value = value
        self.read: set[str] = set()

    def has(self, key: str) -> bool:
        return key.casefold() in self._by_fold

    def raw(self, key: str) -> Any:
        actual = self._by_fold.get(key.casefold())
        if actual is None:
            return None
        self.read.add(actual)
        return self._value[actual]

    def unread(self) -> list[str]:
        return sorted(set(self._value) - self.read)

    def field(self, key: str) -> str:
        return f"{self.where} {key}"

    def obj(self, key: str) -> Fields:
        value = self.raw(key)
        return Fields({} if value is None else value, self.field(key))

    def text(self, key: str, default: str = "", *, limit: int = MAX_STRING) -> str:
        value = self.raw(key)
        if value is None:
            return default
        return string(value, self.field(key), limit=limit)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise UnsafeArchiveError(f"{self.field(key)} must be true or false.")
        return value

    def num(self, key: str, default: int = 0, *, low: int = -(2**63), high: int = 2**64 - 1) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UnsafeArchiveError(f"{self.field(key)} must be a whole number between {low} and {high}.")
        return value

    def strs(self, key: str) -> list[str]:
        value = self.raw(key)
        if value is None:
            return []
        return strings(value, self.field(key))

    def str_map(self, key: str) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > MAX_LIST:
            raise UnsafeArchiveError(f"{self.field(key)} must be an object of strings.")
        return {string(k, self.field(key)): string(v, f"{self.field(key)}[{k!r}]") for k, v in value.items()}

    def seq(self, key: str) -> list[Any]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise UnsafeArchiveError(f"{self.field(key)} must be a list of at most {MAX_LIST} entries.")
        return value


def string(value: Any, where: str, *, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise UnsafeArchiveError(f"{where} must be a string of at most {limit} characters without NUL.")
    return value


def strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise UnsafeArchiveError(f"{where} must be a list of at most {MAX_LIST} strings.")
    return [string(v, where) for v in value]


def abs_path(value: Any, where: str) -> str:
    """A clean absolute container path: no '..', no NUL, normalised."""
    text = string(value, where, limit=4096)
    if not text.startswith("/") or ".." in text.split("/"):
        raise UnsafeArchiveError(f"{where} {text!r} must be an absolute path without '..'.")
    return posixpath.normpath(text).replace("//", "/")


def empty(value: Any) -> bool:
    return value in (None, "", [], {}, False, 0) or (isinstance(value, Mapping) and not any(value.values()))


#: The fix a refusal names when the restore policy could allow what was refused.
POLICY_FIX = "If this container really needs it, allow it in the restoring host's restore policy (see README)."


def refuse(what: str, fix: str = "") -> UnsafeArchiveError:
    """The error for a rebuilt member's field ferry will not restore."""
    tail = f" {fix}" if fix else ""
    return UnsafeArchiveError(f"{what}; refusing the archive.{tail}")


def no_unknown(fields: Fields, known: frozenset[str] | set[str]) -> None:
    """Refuse any field not read so far and not in ``known`` (case-folded, as Go decodes JSON)
    that holds a value: a field ferry does not know is never passed on."""
    folded = {k.casefold() for k in known}
    for key in fields.unread():
        if key.casefold() in folded:
            continue
        if not empty(fields.raw(key)):
            raise refuse(f"{fields.where} has the field {key!r}, which ferry does not restore")

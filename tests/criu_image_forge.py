"""Rewrite CRIU images the way an attacker would: a minimal protobuf wire-format editor.

A CRIU image is one or two 32-bit magic words, then entries, each a 4-byte little-endian size and
a protobuf message (https://criu.org/Images). ``core-<pid>.img`` holds one ``core_entry``; its
``thread_core`` (field 5) carries the task's ``creds`` (field 10: capabilities as pairs of 32-bit
words) and ``seccomp_mode`` (field 11: 0 disabled, 1 strict, 2 filter). Field numbers are CRIU's
images/core.proto and images/creds.proto. Only the fields changed are re-encoded; every other
byte (including fields this module knows nothing about) is carried over as it was, so the image
stays valid for the CRIU that wrote it. ``/usr/bin/crit decode`` reads the result back.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

IMG_COMMON_MAGIC = 0x54564319
IMG_SERVICE_MAGIC = 0x55105940

CORE_THREAD_CORE = 5
THREAD_CORE_CREDS = 10
THREAD_CORE_SECCOMP_MODE = 11
THREAD_CORE_SECCOMP_FILTER = 12
CREDS_CAP_INH, CREDS_CAP_PRM, CREDS_CAP_EFF, CREDS_CAP_BND = 9, 10, 11, 12
CREDS_UID_FIELDS = range(1, 9)  # uid gid euid egid suid sgid fsuid fsgid
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


@dataclass
class Field:
    number: int
    wire: int
    raw: bytes  # the value as encoded (varint bytes, fixed bytes, or the length-delimited payload)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def parse(data: bytes) -> list[Field]:
    fields: list[Field] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            _, end = _varint(data, pos)
        elif wire == FIXED64:
            end = pos + 8
        elif wire == FIXED32:
            end = pos + 4
        elif wire == LEN:
            size, pos = _varint(data, pos)
            end = pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append(Field(number, wire, data[pos:end]))
        pos = end
    return fields


def encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for f in fields:
        out += encode_varint(f.number << 3 | f.wire)
        if f.wire == LEN:
            out += encode_varint(len(f.raw))
        out += f.raw
    return bytes(out)


def _one(fields: list[Field], number: int) -> Field:
    found = [f for f in fields if f.number == number]
    if len(found) != 1:
        raise ValueError(f"expected one field {number}, found {len(found)}")
    return found[0]


def _set_varints(fields: list[Field], number: int, values: list[int]) -> list[Field]:
    """Replace a (repeated) varint field, written unpacked, at the position it had."""
    at = next((i for i, f in enumerate(fields) if f.number == number), len(fields))
    kept = [f for f in fields if f.number != number]
    new = [Field(number, VARINT, encode_varint(v)) for v in values]
    at = min(at, len(kept))
    return kept[:at] + new + kept[at:]


@dataclass
class Image:
    magic: bytes
    entries: list[bytes]

    @classmethod
    def read(cls, data: bytes) -> Image:
        (first,) = struct.unpack_from("<I", data, 0)
        head = 8 if first in (IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC) else 4
        entries, pos = [], head
        while pos < len(data):
            (size,) = struct.unpack_from("<I", data, pos)
            entries.append(data[pos + 4 : pos + 4 + size])
            pos += 4 + size
        return cls(data[:head], entries)

    def bytes(self) -> bytes:
        return self.magic + b"".join(struct.pack("<I", len(e)) + e for e in self.entries)


def cap_words(mask: int) -> list[int]:
    return [mask & 0xFFFFFFFF, mask >> 32]


def rewrite_core(
    data: bytes,
    *,
    caps: int | None = None,
    seccomp_off: bool = False,
    uid: int | None = None,
) -> bytes:
    """A ``core-<pid>.img`` with its thread's credentials and/or seccomp state changed.

    ``caps``: the capability mask to put in the permitted, effective and bounding sets (and the
    inheritable set). ``seccomp_off``: seccomp mode 0, no filter. ``uid``: every uid/gid field."""
    image = Image.read(data)
    core = parse(image.entries[0])
    thread = _one(core, CORE_THREAD_CORE)
    tc = parse(thread.raw)
    creds = _one(tc, THREAD_CORE_CREDS)
    cr = parse(creds.raw)
    if caps is not None:
        for number in (CREDS_CAP_INH, CREDS_CAP_PRM, CREDS_CAP_EFF, CREDS_CAP_BND):
            cr = _set_varints(cr, number, cap_words(caps))
    if uid is not None:
        for number in CREDS_UID_FIELDS:
            cr = _set_varints(cr, number, [uid])
    creds.raw = encode(cr)
    if seccomp_off:
        tc = _set_varints(tc, THREAD_CORE_SECCOMP_MODE, [0])
        tc = [f for f in tc if f.number != THREAD_CORE_SECCOMP_FILTER]
    thread.raw = encode(tc)
    image.entries[0] = encode(core)
    return image.bytes()


def process_caps(pid: int | str = "self", which: str = "CapBnd") -> int:
    """A capability mask from /proc/<pid>/status (CapEff, CapBnd, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(which + ":"):
                return int(line.split()[1], 16)
    raise ValueError(f"no {which} in /proc/{pid}/status")


def seccomp_mode(pid: int | str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    raise ValueError(f"no Seccomp in /proc/{pid}/status")

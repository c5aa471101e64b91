"""A small, bounded reader of the protobuf wire format, for the few CRIU image fields ferry checks.

Not a protobuf library: it splits one message into its fields (number -> values, in order) and
never descends on its own, so nesting depth is whatever the caller walks (core -> thread_core ->
creds is three levels). Every length is checked against the bytes that are actually there and a
varint is at most ten bytes, so hostile input ends in :class:`ProtoError`, never a traceback or a
large allocation.

The readers mimic how protobuf-c (which CRIU uses) will read the same bytes: ``uint32`` and enum
values are truncated to 32 bits, repeated scalars may be packed or not, and a singular field
seen twice is refused outright (protobuf-c would take the last scalar, or merge two messages,
and ferry should not have to guess which).
"""

from __future__ import annotations

from collections.abc import Mapping

VARINT = 0
FIXED64 = 1
LENGTH = 2
FIXED32 = 5
MAX_VARINT_BYTES = 10
MASK32 = 0xFFFFFFFF


class ProtoError(ValueError):
    """The bytes are not a protobuf message ferry can read."""


Value = int | bytes
Fields = Mapping[int, list[tuple[int, Value]]]  # field number -> [(wire type, value), ...]


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one varint at ``pos``; returns (value, next position)."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise ProtoError("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ProtoError("varint longer than ten bytes")


def fields(data: bytes, *, max_fields: int = 1 << 20) -> dict[int, list[tuple[int, Value]]]:
    """Split one message into its fields, in wire order."""
    out: dict[int, list[tuple[int, Value]]] = {}
    pos = 0
    count = 0
    while pos < len(data):
        count += 1
        if count > max_fields:
            raise ProtoError(f"more than {max_fields} fields")
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise ProtoError(f"invalid field number {number}")
        value: Value
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == FIXED64:
            value, pos = _fixed(data, pos, 8)
        elif wire == FIXED32:
            value, pos = _fixed(data, pos, 4)
        elif wire == LENGTH:
            size, pos = read_varint(data, pos)
            if size > len(data) - pos:
                raise ProtoError(f"field {number} claims {size} bytes; only {len(data) - pos} remain")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ProtoError(f"field {number} has wire type {wire}, which CRIU images do not use")
        out.setdefault(number, []).append((wire, value))
    return out


def _fixed(data: bytes, pos: int, size: int) -> tuple[int, int]:
    if pos + size > len(data):
        raise ProtoError("truncated fixed-width field")
    return int.from_bytes(data[pos : pos + size], "little"), pos + size


def _single(msg: Fields, number: int, wire: int) -> Value | None:
    values = msg.get(number, [])
    if not values:
        return None
    if len(values) > 1:
        raise ProtoError(f"field {number} appears {len(values)} times; it is a single field")
    got, value = values[0]
    if got != wire:
        raise ProtoError(f"field {number} has wire type {got}, expected {wire}")
    return value


def uint32(msg: Fields, number: int) -> int | None:
    """A singular ``uint32`` (or enum) field, truncated to 32 bits as protobuf-c does."""
    value = _single(msg, number, VARINT)
    return None if value is None else int(value) & MASK32


def single_varint(msg: Fields, number: int) -> int | None:
    """A singular 64-bit varint field (``uint64``), not truncated."""
    value = _single(msg, number, VARINT)
    return None if value is None else int(value)


def message(msg: Fields, number: int) -> bytes | None:
    """A singular embedded message field, still encoded."""
    value = _single(msg, number, LENGTH)
    return None if value is None else bytes(value)


def messages(msg: Fields, number: int) -> list[bytes]:
    """A repeated embedded message field, each element still encoded."""
    out = []
    for wire, value in msg.get(number, []):
        if wire != LENGTH or not isinstance(value, bytes):
            raise ProtoError(f"field {number} has wire type {wire}, expected {LENGTH}")
        out.append(value)
    return out


def repeated_uint32(msg: Fields, number: int) -> list[int]:
    """A repeated ``uint32`` field, packed or not (a reader must accept both)."""
    out: list[int] = []
    for wire, value in msg.get(number, []):
        if wire == VARINT and isinstance(value, int):
            out.append(value & MASK32)
        elif wire == LENGTH and isinstance(value, bytes):
            pos = 0
            while pos < len(value):
                item, pos = read_varint(value, pos)
                out.append(item & MASK32)
        else:
            raise ProtoError(f"field {number} has wire type {wire}, expected a varint")
    return out


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer (for tests and re-encoding images)."""
    if value < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_field(number: int, value: int | bytes) -> bytes:
    """Encode one varint or length-delimited field."""
    if isinstance(value, bytes):
        return encode_varint(number << 3 | LENGTH) + encode_varint(len(value)) + value
    return encode_varint(number << 3 | VARINT) + encode_varint(value)


def encode_fields(msg: Fields) -> bytes:
    """Encode a message split by :func:`fields` again (field order by number; tests edit images)."""
    out = bytearray()
    for number in sorted(msg):
        for wire, value in msg[number]:
            if wire in (FIXED64, FIXED32):
                width = 8 if wire == FIXED64 else 4
                out += encode_varint(number << 3 | wire) + int(value).to_bytes(width, "little")
            else:
                out += encode_field(number, value)
    return bytes(out)

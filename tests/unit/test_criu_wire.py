"""The bounded protobuf reader under the core-image checks: malformed, deep, damaged and random
images, and crit's encoding."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.archive import criu_images as ci
from ferry.archive import protowire as pw
from ferry.archive.criu_images import check_core_images
from ferry.errors import UnsafeArchiveError
from tests import criu_edit
from tests.criu_edit import FULL_CAPS
from tests.unit.criu_cases import (
    CHOWN,
    GRANTS,
    core,
    images,
    refused,
    seccomp_img,
)

# -- the wire format: bounded, never a traceback ------------------------------------------------


def _with_entry(payload: bytes) -> bytes:
    return criu_edit.image(ci.IMG_COMMON_MAGIC.to_bytes(4, "little") + ci.CORE_MAGIC.to_bytes(4, "little"), [payload])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "shorter than a CRIU image header"),
        (b"\x19CVT\x00\x00\x00\x00", "magic"),
        (_with_entry(b"")[:10], "ends inside an entry's size"),
        (_with_entry(b"\x08\x01") + b"\xff\xff\xff\x7f", "claims"),
        (_with_entry(b"\x08\x01") + _with_entry(b"\x08\x01")[8:], "holds 2 entries"),
        (_with_entry(b"\x08"), "truncated varint"),
        (_with_entry(b"\x08" + b"\xff" * 10 + b"\x01"), "longer than ten bytes"),
        (_with_entry(b"\x2a\xff\xff\xff\xff\x0f"), "claims 4294967295 bytes"),
        (_with_entry(b"\x2b"), "wire type 3"),
        (_with_entry(b"\x00\x01"), "invalid field number 0"),
        (_with_entry(b"\x29" + b"\x00" * 3), "truncated fixed-width"),
        (_with_entry(b"\x2a\x00\x2a\x00"), "appears 2 times"),
        (_with_entry(b"\x28\x01"), "wire type 0, expected 2"),
    ],
)
def test_malformed_images_are_refused_cleanly(data: bytes, match: str) -> None:
    refused(images(data), GRANTS, match)


def test_deep_nesting_is_never_walked() -> None:
    payload = b""
    for _ in range(5000):
        payload = pw.encode_field(5, payload)  # thread_core inside thread_core inside ...
    refused(images(_with_entry(payload)), GRANTS, "cannot be read|credentials")


def test_image_count_is_bounded() -> None:
    many = {f"checkpoint/core-{i}.img": b"" for i in range(ci.MAX_IMAGES + 1)}
    refused(many, GRANTS, "more than")
    threads = criu_edit.pstree_image(list(range(1, ci.MAX_IMAGES + 2)))
    many = {"checkpoint/pstree.img": threads}
    refused(many, GRANTS, "more than")


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_damaged_core_images_are_refused_or_pass_never_crash(data: st.DataObject) -> None:
    base = core(caps=[CHOWN, 0])
    pos = data.draw(st.integers(0, len(base)))
    cut = data.draw(st.integers(0, 16))
    damaged = base[:pos] + data.draw(st.binary(max_size=24)) + base[pos + cut :]
    with contextlib.suppress(UnsafeArchiveError):
        check_core_images(images(damaged, seccomp=seccomp_img(None)), GRANTS)


@given(st.binary(max_size=512))
def test_random_bytes_never_crash_the_walker(data: bytes) -> None:
    with contextlib.suppress(pw.ProtoError):
        pw.fields(data)


@given(st.integers(0, (1 << 64) - 1))
def test_varints_round_trip(value: int) -> None:
    assert pw.read_varint(pw.encode_varint(value) + b"\x00", 0) == (value, len(pw.encode_varint(value)))


# -- against crit ------------------------------------------------------------------------------


def crit_encode(image: dict[str, Any]) -> bytes:
    crit = shutil.which("crit")
    if crit is None:
        pytest.fail("this test needs crit (apt-get install criu)", pytrace=False)
    return subprocess.run([crit, "encode"], input=json.dumps(image).encode(), capture_output=True, check=True).stdout


def test_images_encoded_by_crit_are_read_the_same_way() -> None:
    ids = dict.fromkeys(("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid"), 0)
    creds = {**ids, "secbits": 0, "cap_inh": [0, 0], "cap_prm": [1025, 0], "cap_eff": [1025, 0], "cap_bnd": [1025, 0]}
    thread = {"futex_rla": 0, "futex_rla_len": 0, "creds": creds, "seccomp_mode": "filter", "seccomp_filter": 0}
    tc = {"task_state": 1, "exit_code": 0, "personality": 0, "flags": 0, "blk_sigset": 0, "comm": "sh"}
    good = crit_encode({"magic": "CORE", "entries": [{"mtype": "X86_64", "tc": tc, "thread_core": thread}]})
    filters = crit_encode(
        {"magic": "SECCOMP", "entries": [{"seccomp_filters": [{"filter": "BgAAAAAA/38=", "flags": 1}]}]}
    )
    check_core_images(images(good, seccomp=filters), GRANTS)
    bad_thread = {**thread, "creds": {**creds, "cap_eff": FULL_CAPS}, "seccomp_mode": "disabled"}
    bad = crit_encode({"magic": "CORE", "entries": [{"mtype": "X86_64", "tc": tc, "thread_core": bad_thread}]})
    refused(images(bad, seccomp=filters), GRANTS, "effective capability set")

"""The seccomp filter evaluator: what it proves denied, and what it refuses to guess."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferry.archive import seccomp_bpf as sb
from ferry.archive.syscalls_x86_64 import SYSCALLS

ALLOW, ERRNO, KILL, LOG, NOTIF = 0x7FFF0000, 0x00050001, 0x80000000, 0x7FFC0000, 0x7FC00000
KEXEC = SYSCALLS["kexec_load"]


def insn(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def ld(offset: int) -> bytes:
    return insn(0x20, k=offset)


def jeq(k: int, jt: int, jf: int) -> bytes:
    return insn(0x15, jt, jf, k)


def ret(k: int) -> bytes:
    return insn(0x06, k=k)


def deny_list(*nrs: int, action: int = ERRNO) -> bytes:
    """arch check, then one jeq per denied call, else allow (what libseccomp emits, simplified)."""
    body = b"".join(jeq(nr, len(nrs) - i, 0) for i, nr in enumerate(nrs))
    return ld(4) + jeq(sb.AUDIT_ARCH_X86_64, 1, 0) + ret(KILL) + ld(0) + body + ret(ALLOW) + ret(action)


def test_a_deny_list_denies_what_it_lists_and_nothing_else() -> None:
    program = deny_list(KEXEC, SYSCALLS["init_module"])
    assert sb.denies(program, KEXEC) and sb.denies(program, SYSCALLS["init_module"])
    assert not sb.denies(program, SYSCALLS["read"])


@pytest.mark.parametrize(("action", "denied"), [(ERRNO, True), (KILL, True), (0, True), (0x00030000, True)])
def test_denying_actions(action: int, denied: bool) -> None:
    assert sb.denies(deny_list(KEXEC, action=action), KEXEC) is denied


@pytest.mark.parametrize("action", [ALLOW, LOG, NOTIF, 0x7FF00000])
def test_allowing_or_deferring_actions_are_not_denials(action: int) -> None:
    assert not sb.denies(deny_list(KEXEC, action=action), KEXEC)


def test_an_allow_all_filter_denies_nothing() -> None:
    assert not sb.denies(ret(ALLOW), KEXEC)


def test_a_denial_that_depends_on_an_argument_is_not_unconditional() -> None:
    # kexec_load denied only when args[0] == 0: the evaluator must not assume the argument
    program = ld(0) + jeq(KEXEC, 0, 3) + ld(16) + jeq(0, 0, 1) + ret(ERRNO) + ret(ALLOW)
    assert not sb.denies(program, KEXEC)


def test_an_argument_check_that_denies_on_both_branches_is_a_denial() -> None:
    program = ld(0) + jeq(KEXEC, 0, 3) + ld(16) + jeq(0, 0, 1) + ret(ERRNO) + ret(KILL) + ret(ALLOW)
    assert sb.denies(program, KEXEC)


def test_the_other_architectures_are_not_taken() -> None:
    # for x86_64 the arch compare is concrete: the i386 branch (allow) is never reached
    program = ld(4) + jeq(0x40000003, 0, 1) + ret(ALLOW) + ret(ERRNO)
    assert sb.denies(program, KEXEC)


def test_alu_scratch_memory_and_register_moves() -> None:
    # A = nr; M[0] = A; A = 0; X = M[0]; A = X; A &= 0xffff; jeq kexec
    program = ld(0) + insn(0x02, k=0) + insn(0x00, k=0) + insn(0x61, k=0) + insn(0x87) + insn(0x54, k=0xFFFF)
    program += jeq(KEXEC, 0, 1) + ret(ERRNO) + ret(ALLOW)
    assert sb.denies(program, KEXEC) and not sb.denies(program, 0)


def test_return_of_an_unknown_value_is_not_a_denial() -> None:
    assert not sb.denies(ld(16) + insn(0x16), KEXEC)  # RET A, A = args[0]


@pytest.mark.parametrize(
    ("program", "match"),
    [
        (b"", "not a whole"),
        (b"\x06\x00\x00", "not a whole"),
        (ld(2) + ret(ERRNO), "offset 2"),
        (ld(64) + ret(ERRNO), "offset 64"),
        (insn(0x28, k=0) + ret(ERRNO), "opcode 0x28"),  # LD H ABS: refused by seccomp
        (jeq(0, 5, 5) + ret(ERRNO), "leaves the program"),
        (insn(0x05, k=9) + ret(ERRNO), "leaves the program"),
        (ld(0), "past its end"),
        (insn(0x60, k=16) + ret(ERRNO), "slot 16"),
        (insn(0x34, k=0) + ret(ERRNO), "division by zero"),
    ],
)
def test_what_seccomp_would_not_load_is_unprovable(program: bytes, match: str) -> None:
    sb.denies.cache_clear()
    with pytest.raises(sb.Unprovable, match=match):
        sb.denies(program, KEXEC)


def test_the_number_of_states_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sb, "MAX_STATES", 8)
    sb.denies.cache_clear()
    branches = b"".join(ld(16 + 8 * (i % 6)) + jeq(i, 0, 0) + insn(0x04, k=i) for i in range(20))
    with pytest.raises(sb.Unprovable, match="states"):
        sb.denies(ld(16) + branches + ret(ERRNO), KEXEC + 1000)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 5), st.integers(0, 5), st.integers(0, 80)), max_size=24)
)
def test_random_programs_end_in_a_verdict_or_unprovable(code: list[tuple[int, int, int, int]]) -> None:
    program = b"".join(insn(*c) for c in code)
    with contextlib.suppress(sb.Unprovable):
        assert sb.denies(program, KEXEC) in (True, False)


def test_unconditional_denials_of_a_profile() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    }
    denied = sb.unconditional_denials(profile)
    assert KEXEC in denied and SYSCALLS["bpf"] in denied
    for maybe in ("read", "write", "mount", "socket"):
        assert SYSCALLS[maybe] not in denied, maybe
    allow_default = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}],
    }
    assert sb.unconditional_denials(allow_default) == {KEXEC}
    assert sb.unconditional_denials([]) == frozenset()


def test_this_hosts_default_profile() -> None:
    denied = sb.host_default_denials()
    assert sb.DEFAULT_PROFILE.exists(), "containers-common's seccomp.json (Podman's default profile)"
    assert {KEXEC, SYSCALLS["kexec_file_load"], SYSCALLS["add_key"], SYSCALLS["userfaultfd"]} <= denied
    for conditional in ("read", "init_module", "open_by_handle_at", "mount"):  # allowed with some capability
        assert SYSCALLS[conditional] not in denied, conditional
    assert json.loads(sb.DEFAULT_PROFILE.read_text())["defaultAction"] == "SCMP_ACT_ERRNO"


def test_an_unreadable_profile_means_no_required_denials() -> None:
    assert sb.host_default_denials(Path("/nonexistent/seccomp.json")) == frozenset()

"""Prove that a seccomp filter from a CRIU image denies given x86_64 system calls, whatever their
arguments.

A restored thread's seccomp filters come from the archive (``seccomp.img``): a filter that
allows everything would pass a mode check. So ferry runs each filter, a classic BPF program,
over ``seccomp_data`` with the system call number and the architecture known (x86_64) and the
instruction pointer and arguments unknown: a conditional jump on an unknown value takes both
branches. A call counts as denied only if every path ends in a denying action (kill, trap or
errno). Classic BPF jumps only forward, so each path is at most as long as the program; the
number of explored states is bounded too, and a filter too tangled to explore is not proven.

Only instructions the kernel accepts in a seccomp filter are interpreted; anything else makes
the filter unprovable (the kernel would refuse to load it anyway).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from ferry.archive.syscalls_x86_64 import SYSCALLS

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_DATA_SIZE = 64
RET_ACTION_FULL = 0xFFFF0000
RET_USER_NOTIF = 0x7FC00000
MASK = 0xFFFFFFFF
MAX_STATES = 1 << 16
DEFAULT_PROFILE = Path("/usr/share/containers/seccomp.json")
DENY_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP")

Value = int | None  # None: unknown
State = tuple[int, Value, Value, tuple[Value, ...]]  # pc, A, X, scratch memory


class Unprovable(ValueError):
    """The filter cannot be evaluated (an instruction seccomp refuses, or too many states)."""


def insns(program: bytes) -> list[tuple[int, int, int, int]]:
    """Split a program into (code, jt, jf, k) instructions."""
    if not program or len(program) % 8:
        raise Unprovable("not a whole BPF program")
    return [
        (
            int.from_bytes(program[i : i + 2], "little"),
            program[i + 2],
            program[i + 3],
            int.from_bytes(program[i + 4 : i + 8], "little"),
        )
        for i in range(0, len(program), 8)
    ]


@lru_cache(maxsize=4096)
def denies(program: bytes, nr: int, *, arch: int = AUDIT_ARCH_X86_64) -> bool:
    """Whether every path of ``program`` returns a denying action for system call ``nr``."""
    code = insns(program)
    returns = _returns(code, nr, arch)
    return all(r is not None and _signed(r & RET_ACTION_FULL) < _signed(RET_USER_NOTIF) for r in returns)


def _signed(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def _returns(code: list[tuple[int, int, int, int]], nr: int, arch: int) -> set[Value]:
    out: set[Value] = set()
    start: State = (0, 0, 0, (None,) * 16)
    todo = [start]
    seen = {start}
    while todo:
        if len(seen) > MAX_STATES:
            raise Unprovable(f"more than {MAX_STATES} states")
        for nxt in _step(code, todo.pop(), nr, arch, out):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return out


def _step(code: list[tuple[int, int, int, int]], state: State, nr: int, arch: int, out: set[Value]) -> list[State]:
    pc, a, x, mem = state
    if pc >= len(code):
        raise Unprovable("the program runs past its end")
    op, jt, jf, k = code[pc]
    cls = op & 0x07
    if cls == 0x06:  # RET
        if op == 0x06:
            out.add(k)
        elif op == 0x16:
            out.add(a)
        else:
            raise Unprovable(f"return opcode {op:#x}")
        return []
    if cls == 0x05:  # JMP
        return _jump(op, jt, jf, k, pc, a, x, mem, len(code))
    nxt = pc + 1
    if op == 0x20:  # LD W ABS: a field of seccomp_data
        if k % 4 or k >= SECCOMP_DATA_SIZE:
            raise Unprovable(f"load from seccomp_data offset {k}")
        return [(nxt, nr if k == 0 else arch if k == 4 else None, x, mem)]
    if op == 0x00:  # LD IMM
        return [(nxt, k, x, mem)]
    if op == 0x01:  # LDX IMM
        return [(nxt, a, k, mem)]
    if op == 0x80:  # LD W LEN
        return [(nxt, SECCOMP_DATA_SIZE, x, mem)]
    if op == 0x81:  # LDX W LEN
        return [(nxt, a, SECCOMP_DATA_SIZE, mem)]
    if op in (0x60, 0x61, 0x02, 0x03):  # LD MEM, LDX MEM, ST, STX
        if k >= 16:
            raise Unprovable(f"scratch memory slot {k}")
        if op == 0x60:
            return [(nxt, mem[k], x, mem)]
        if op == 0x61:
            return [(nxt, a, mem[k], mem)]
        stored = a if op == 0x02 else x
        return [(nxt, a, x, (*mem[:k], stored, *mem[k + 1 :]))]
    if cls == 0x04:  # ALU
        return [(nxt, _alu(op, a, x, k), x, mem)]
    if op == 0x07:  # TAX
        return [(nxt, a, a, mem)]
    if op == 0x87:  # TXA
        return [(nxt, x, x, mem)]
    raise Unprovable(f"opcode {op:#x}")


def _alu(op: int, a: Value, x: Value, k: int) -> Value:
    kind = op & 0xF0
    if kind == 0x80:  # NEG
        return None if a is None else -a & MASK
    operand = x if op & 0x08 else k
    if a is None or operand is None:
        return None
    if kind in (0x30, 0x90) and operand == 0:
        raise Unprovable("division by zero")  # the program would return 0 (kill): never an allow
    results = {
        0x00: a + operand,
        0x10: a - operand,
        0x20: a * operand,
        0x30: a // operand if operand else 0,
        0x40: a | operand,
        0x50: a & operand,
        0x60: a << operand if operand < 32 else 0,
        0x70: a >> operand if operand < 32 else 0,
        0x90: a % operand if operand else 0,
        0xA0: a ^ operand,
    }
    if kind not in results:
        raise Unprovable(f"ALU opcode {op:#x}")
    return results[kind] & MASK


def _jump(
    op: int, jt: int, jf: int, k: int, pc: int, a: Value, x: Value, mem: tuple[Value, ...], size: int
) -> list[State]:
    kind = op & 0xF0
    if kind == 0x00:  # JA
        if op != 0x05:
            raise Unprovable(f"jump opcode {op:#x}")
        target = pc + 1 + k
        if target >= size:
            raise Unprovable("a jump leaves the program")
        return [(target, a, x, mem)]
    if pc + 1 + max(jt, jf) >= size:
        raise Unprovable("a jump leaves the program")
    operand = x if op & 0x08 else k
    taken = _compare(kind, a, operand)
    branches = [jt, jf] if taken is None else [jt if taken else jf]
    return [(pc + 1 + off, a, x, mem) for off in branches]


def _compare(kind: int, a: Value, operand: Value) -> bool | None:
    if a is None or operand is None:
        return None
    if kind == 0x10:
        return a == operand
    if kind == 0x20:
        return a > operand
    if kind == 0x30:
        return a >= operand
    if kind == 0x40:
        return bool(a & operand)
    raise Unprovable(f"jump kind {kind:#x}")


def unconditional_denials(profile: object) -> frozenset[int]:
    """x86_64 system calls an OCI/containers seccomp profile denies whatever the capabilities or
    arguments: those no allow rule names when the default action denies, plus those an
    unconditional deny rule names (and no unconditional allow rule does)."""
    if not isinstance(profile, dict) or not isinstance(profile.get("syscalls", []), list):
        return frozenset()
    maybe_allowed: set[str] = set()
    allowed: set[str] = set()
    denied: set[str] = set()
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict):
            continue
        names = {n for n in _names(rule) if isinstance(n, str)}
        plain = not rule.get("args") and not rule.get("includes") and not rule.get("excludes")
        if rule.get("action") == "SCMP_ACT_ALLOW":
            maybe_allowed |= names
            allowed |= names if plain else set()
        elif rule.get("action") in DENY_ACTIONS and plain:
            denied |= names
    if profile.get("defaultAction") in DENY_ACTIONS:
        denied |= set(SYSCALLS) - maybe_allowed
    return frozenset(SYSCALLS[name] for name in denied - allowed if name in SYSCALLS)


def _names(rule: dict[str, object]) -> Iterable[object]:
    names = rule.get("names")
    if isinstance(names, list):
        yield from names
    if isinstance(rule.get("name"), str):
        yield rule["name"]


def host_default_denials(path: Path = DEFAULT_PROFILE) -> frozenset[int]:
    """What this host's default container seccomp profile denies unconditionally (empty when the
    host has no readable profile: then only the mode and the filter chain are checked)."""
    try:
        return unconditional_denials(json.loads(path.read_text()))
    except (OSError, ValueError, RecursionError):
        return frozenset()

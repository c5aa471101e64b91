"""CRIU images may not grant a restored process more than the container's OCI spec grants.

CRIU restores each thread's credentials and seccomp state exactly as ``checkpoint/core-<tid>.img``
records them, as root, whatever the spec says. An archive whose core images claim a full
capability set, uid 0 or no seccomp filter would get exactly that. So before Podman sees the
archive, ferry decodes every core image (and ``seccomp.img``) and compares it with the spec:

* capabilities: each of the effective, permitted, inheritable, bounding and ambient sets must be
  a subset of the spec's ``process.capabilities`` set of the same name;
* user: when the spec's user is not root, no uid (real, effective, saved, filesystem) may be 0,
  and no gid may be 0 unless the spec's gid or additional gids hold 0. A switch to another
  non-root id is allowed (a server dropping privileges);
* seccomp: when the spec has ``linux.seccomp``, every live thread runs in filter mode (2) with a
  valid filter chain in ``seccomp.img``; every copy of the mode in the image must say so (CRIU
  still honours the old per-task field);
* seccomp filters: each thread's chain denies, for any arguments, every x86_64 call in
  ``Grants.must_deny`` (ferry passes what this host's default profile denies unconditionally;
  see :mod:`ferry.archive.seccomp_bpf`);
* ``no_new_privs`` when the spec sets ``process.noNewPrivileges``;
* resource limits: no hard limit above the one the spec sets for that resource, unless the spec
  grants CAP_SYS_RESOURCE (limits the spec does not name are not checked);
* LSM: a thread's AppArmor profile or SELinux label (and socket-creation label) is the spec's
  own or absent; AppArmor policy blobs (``apparmor.img``, ``apparmor_data``), which CRIU would
  load into the host kernel, are refused;
* a live thread must carry its credentials in its core image (without them CRIU would leave the
  thread with its own, full, credentials, or read an old-style ``creds-*.img``).

The images checked are the ones CRIU restores: ``pstree.img`` names every task and thread, and
CRIU reads ``core-<tid>.img`` for exactly those (each must be present). Other core images are never
read: Podman leaves a previous dump's images in the checkpoint directory (seen after two
``--leave-running`` checkpoints of a shell loop: ``core-<pid>.img`` of children long gone, whose
filter indices point past the new ``seccomp.img``), so they travel but are not checked.

The decoding is bounded (see :mod:`ferry.archive.protowire`): any malformed image is refused with
:class:`UnsafeArchiveError`, never a traceback.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from ferry.archive import protowire as pw
from ferry.archive import seccomp_bpf
from ferry.archive.criu_grants import CAP_SYS_RESOURCE, RLIMITS, Grants, cap_names
from ferry.archive.syscalls_x86_64 import SYSCALLS
from ferry.errors import UnsafeArchiveError

IMG_COMMON_MAGIC = 0x54564319
CORE_MAGIC = 0x55053847
SECCOMP_MAGIC = 0x64413049
PSTREE_MAGIC = 0x50273030
TASK_DEAD = 2
SECCOMP_MODE_FILTER = 2
BPF_INSN = 8
BPF_MAXINSNS = 4096
CORE_IMAGE = re.compile(r"core-[0-9]+\.img")
SECCOMP_IMAGE = "seccomp.img"
PSTREE_IMAGE = "pstree.img"
#: AppArmor namespaces and policy that CRIU would load into the host kernel.
APPARMOR_IMAGE = "apparmor.img"
#: Bounds for collecting images while the archive streams past.
MAX_IMAGE_BYTES = 4 << 20
MAX_SECCOMP_BYTES = 16 << 20
MAX_IMAGES = 1 << 16

# Field numbers from CRIU's images/core.proto, creds.proto and seccomp.proto.
CORE_TC, CORE_THREAD_CORE = 3, 5
TC_TASK_STATE, TC_RLIMITS, TC_OLD_SECCOMP_MODE, TC_OLD_SECCOMP_FILTER = 1, 8, 11, 12
RLIMITS_ENTRIES, RLIMIT_MAX = 1, 2
THREAD_CREDS, THREAD_SECCOMP_MODE, THREAD_SECCOMP_FILTER = 10, 11, 12
CREDS_IDS = {"uid": 1, "gid": 2, "euid": 3, "egid": 4, "suid": 5, "sgid": 6, "fsuid": 7, "fsgid": 8}
CREDS_CAPS = {"effective": 11, "permitted": 10, "inheritable": 9, "bounding": 12, "ambient": 19}
CREDS_GROUPS, CREDS_NO_NEW_PRIVS = 14, 18
CREDS_LSM_PROFILE, CREDS_LSM_SOCKCREATE, CREDS_APPARMOR_DATA = 15, 16, 17
SECCOMP_FILTERS, FILTER_BYTES, FILTER_PREV = 1, 1, 2
PSTREE_PID, PSTREE_THREADS = 1, 5


def is_collected(name: str) -> bool:
    """Whether the reader should hand this archive member to :func:`check_core_images`."""
    head, base = posixpath.split(name)
    return head == "checkpoint" and (
        base in (SECCOMP_IMAGE, APPARMOR_IMAGE, PSTREE_IMAGE) or CORE_IMAGE.fullmatch(base) is not None
    )


def image_limit(name: str) -> int:
    return MAX_SECCOMP_BYTES if name.endswith(SECCOMP_IMAGE) else MAX_IMAGE_BYTES


def check_core_images(images: Mapping[str, bytes], grants: Grants) -> None:
    """Refuse core images that grant more than ``grants``; ``images`` maps member names to bytes
    and holds every ``checkpoint/core-*.img``, ``pstree.img`` and ``seccomp.img`` of the archive."""
    if len(images) > MAX_IMAGES:
        raise UnsafeArchiveError(f"The archive holds more than {MAX_IMAGES} CRIU core images.")
    filters: list[Filter] | None = None
    for name in sorted(images):
        if posixpath.basename(name) == APPARMOR_IMAGE:
            raise UnsafeArchiveError(
                f"{name}: the archive carries AppArmor namespaces or policy, which CRIU would load into this "
                "host's kernel; ferry never restores those."
            )
        if posixpath.basename(name) == SECCOMP_IMAGE:
            filters = seccomp_filters(name, images[name])
    cores = {posixpath.basename(name): name for name in images if CORE_IMAGE.fullmatch(posixpath.basename(name))}
    pstree = next((name for name in images if posixpath.basename(name) == PSTREE_IMAGE), None)
    if pstree is None:
        if cores:
            raise UnsafeArchiveError(
                "The archive has CRIU core images but no checkpoint/pstree.img naming the tasks to "
                "restore; refusing the archive."
            )
        return
    for tid in restored_threads(pstree, images[pstree]):
        core = cores.get(f"core-{tid}.img")
        if core is None:
            raise UnsafeArchiveError(
                f"{pstree} names thread {tid}, but the archive has no checkpoint/core-{tid}.img for it; "
                "refusing the archive."
            )
        _check_core(core, images[core], grants, filters)


def restored_threads(name: str, data: bytes) -> list[int]:
    """Every task's threads (the main thread included) that ``pstree.img`` tells CRIU to restore."""
    tids: list[int] = []
    for raw in _entries(name, data, PSTREE_MAGIC):
        entry = _fields(name, raw)
        pid = pw.uint32(entry, PSTREE_PID)
        if pid is None:
            raise _bad(name, "a task has no pid")
        threads = pw.repeated_uint32(entry, PSTREE_THREADS)
        for tid in [pid, *threads]:
            if tid not in tids:
                tids.append(tid)
        if len(tids) > MAX_IMAGES:
            raise UnsafeArchiveError(f"{name} names more than {MAX_IMAGES} threads; refusing the archive.")
    return tids


def _entries(name: str, data: bytes, magic: int) -> list[bytes]:
    """The protobuf entries of one CRIU image: two magic words, then size-prefixed messages."""
    if len(data) < 8:
        raise _bad(name, "it is shorter than a CRIU image header")
    first, second = int.from_bytes(data[:4], "little"), int.from_bytes(data[4:8], "little")
    if (first, second) != (IMG_COMMON_MAGIC, magic):
        raise _bad(name, f"its magic is {first:#010x} {second:#010x}, not a CRIU image of this kind")
    out, pos = [], 8
    while pos < len(data):
        if pos + 4 > len(data):
            raise _bad(name, "it ends inside an entry's size")
        size = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        if size > len(data) - pos:
            raise _bad(name, f"an entry claims {size} bytes; only {len(data) - pos} remain")
        out.append(data[pos : pos + size])
        pos += size
    return out


def _one_entry(name: str, data: bytes, magic: int) -> pw.Fields:
    entries = _entries(name, data, magic)
    if len(entries) != 1:
        raise _bad(name, f"it holds {len(entries)} entries; CRIU writes exactly one")
    return _fields(name, entries[0])


def _fields(name: str, data: bytes) -> pw.Fields:
    try:
        return pw.fields(data)
    except pw.ProtoError as exc:
        raise _bad(name, str(exc)) from exc


def _bad(name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{name}: the CRIU image cannot be read ({why}); refusing the archive.")


Filter = tuple[bytes, int | None]  # BPF program, index of the previous filter in the chain


def seccomp_filters(name: str, data: bytes) -> list[Filter]:
    """Each filter of seccomp.img as (BPF program, index of the previous filter)."""
    try:
        entry = _one_entry(name, data, SECCOMP_MAGIC)
        out = []
        for raw in pw.messages(entry, SECCOMP_FILTERS):
            f = _fields(name, raw)
            program = pw.message(f, FILTER_BYTES)
            if program is None or not program or len(program) % BPF_INSN or len(program) > BPF_MAXINSNS * BPF_INSN:
                raise _bad(name, "a seccomp filter is empty or not a whole BPF program")
            out.append((program, pw.uint32(f, FILTER_PREV)))
        return out
    except pw.ProtoError as exc:
        raise _bad(name, str(exc)) from exc


def _check_core(name: str, data: bytes, grants: Grants, filters: list[Filter] | None) -> None:
    try:
        core = _one_entry(name, data, CORE_MAGIC)
        raw_tc = pw.message(core, CORE_TC)
        tc = _fields(name, raw_tc) if raw_tc is not None else {}
        if pw.uint32(tc, TC_TASK_STATE) == TASK_DEAD:
            # A zombie (e.g. a child that exited and was not reaped yet): CRIU restores it as an
            # exited task that runs nothing; its seccomp filters may no longer be in seccomp.img.
            return
        raw_thread = pw.message(core, CORE_THREAD_CORE)
        if raw_thread is None:
            raise UnsafeArchiveError(
                f"{name}: a live task without thread state would keep CRIU's own credentials; refusing the archive."
            )
        thread = _fields(name, raw_thread)
        raw_creds = pw.message(thread, THREAD_CREDS)
        if raw_creds is None:
            raise UnsafeArchiveError(
                f"{name}: the thread carries no credentials (an old-style image); ferry cannot check "
                "what CRIU would restore, so it refuses the archive."
            )
        _check_creds(name, _fields(name, raw_creds), grants)
        _check_rlimits(name, tc, grants)
        if grants.seccomp:
            _check_seccomp(name, tc, thread, filters, grants.must_deny, leader=raw_tc is not None)
    except pw.ProtoError as exc:
        raise _bad(name, str(exc)) from exc


def _check_creds(name: str, creds: pw.Fields, grants: Grants) -> None:
    for cap_set, number in CREDS_CAPS.items():
        words = pw.repeated_uint32(creds, number)
        mask = sum(word << (32 * i) for i, word in enumerate(words))
        extra = mask & ~getattr(grants, cap_set)
        if extra:
            raise UnsafeArchiveError(
                f"{name}: the restored process would hold {', '.join(cap_names(extra))} in its {cap_set} "
                f"capability set, which the container's spec does not grant; refusing the archive."
            )
    ids = {}
    for field, number in CREDS_IDS.items():
        value = pw.uint32(creds, number)
        if value is None:
            raise _bad(name, f"the credentials lack {field}")
        ids[field] = value
    if grants.uid != 0:
        root = [f for f in ("uid", "euid", "suid", "fsuid") if ids[f] == 0]
        if root:
            raise UnsafeArchiveError(
                f"{name}: the restored process would run with {'/'.join(root)} 0 (root), but the container's "
                f"spec runs it as uid {grants.uid}; refusing the archive."
            )
    if grants.gid != 0 and 0 not in grants.additional_gids:
        groups = [ids[f] for f in ("gid", "egid", "sgid", "fsgid")] + pw.repeated_uint32(creds, CREDS_GROUPS)
        if 0 in groups:
            raise UnsafeArchiveError(
                f"{name}: the restored process would hold group 0 (root), which the container's spec "
                f"does not grant (gid {grants.gid}); refusing the archive."
            )
    if grants.no_new_privs and not pw.uint32(creds, CREDS_NO_NEW_PRIVS):
        raise UnsafeArchiveError(
            f"{name}: the container's spec sets noNewPrivileges, but the restored process would run "
            "without it; refusing the archive."
        )
    _check_lsm(name, creds, grants)


def _check_rlimits(name: str, tc: pw.Fields, grants: Grants) -> None:
    """CRIU sets the restored task's limits as root: none above the spec's hard limits, unless the
    spec lets the container raise them itself (CAP_SYS_RESOURCE)."""
    raw = pw.message(tc, TC_RLIMITS)
    if raw is None or not grants.rlimits or grants.bounding & CAP_SYS_RESOURCE:
        return
    limits = pw.messages(_fields(name, raw), RLIMITS_ENTRIES)
    names = {number: kind for kind, number in RLIMITS.items()}
    for number, hard in grants.rlimits:
        if number >= len(limits):
            continue
        value = pw.single_varint(_fields(name, limits[number]), RLIMIT_MAX)
        if value is not None and value > hard:
            raise UnsafeArchiveError(
                f"{name}: the restored process would have a hard {names[number]} of {value}, above the "
                f"{hard} the container's spec sets; refusing the archive."
            )


def _check_lsm(name: str, creds: pw.Fields, grants: Grants) -> None:
    """CRIU switches the restored thread to the LSM profile in its image: only the spec's own."""
    if pw.message(creds, CREDS_APPARMOR_DATA) is not None:
        raise UnsafeArchiveError(
            f"{name}: the credentials carry AppArmor policy data, which CRIU would load into this host's "
            "kernel; refusing the archive."
        )
    allowed = {label for label in (grants.apparmor_profile, grants.selinux_label) if label}
    for field, number in (("LSM profile", CREDS_LSM_PROFILE), ("socket-creation LSM label", CREDS_LSM_SOCKCREATE)):
        raw = pw.message(creds, number)
        if raw is None:
            continue
        label = raw.decode("utf-8", "replace")
        if label not in allowed:
            raise UnsafeArchiveError(
                f"{name}: the restored process would run with the {field} {label!r}, which is not the one the "
                "container's spec sets; refusing the archive."
            )


def _check_seccomp(
    name: str,
    tc: pw.Fields,
    thread: pw.Fields,
    filters: list[Filter] | None,
    must_deny: frozenset[int],
    *,
    leader: bool = True,
) -> None:
    # CRIU lets the old per-task fields override the per-thread ones: every copy must agree.
    modes = [m for m in (pw.uint32(tc, TC_OLD_SECCOMP_MODE), pw.uint32(thread, THREAD_SECCOMP_MODE)) if m is not None]
    if not leader and not modes:
        # A further thread of a process (no task core): CRIU 4.2 records seccomp state only for a
        # process's main thread when its threads share its filters (seen on Redis and MariaDB),
        # and the main thread's core image is checked on its own.
        return
    if not modes or any(mode != SECCOMP_MODE_FILTER for mode in modes):
        shown = ", ".join(str(m) for m in modes) or "0 (disabled)"
        raise UnsafeArchiveError(
            f"{name}: the restored process would run with seccomp mode {shown}, but the container's "
            "spec confines it with a seccomp filter (mode 2); refusing the archive."
        )
    indices = [
        i for i in (pw.uint32(tc, TC_OLD_SECCOMP_FILTER), pw.uint32(thread, THREAD_SECCOMP_FILTER)) if i is not None
    ]
    if filters is None or not filters:
        raise UnsafeArchiveError(
            f"{name}: the process runs in seccomp filter mode but the archive has no seccomp.img "
            "with its filters; refusing the archive."
        )
    for index in indices or [0]:
        chain = _filter_chain(name, index, filters)
        if must_deny:
            _check_denials(name, [filters[i][0] for i in chain], must_deny)


def _check_denials(name: str, programs: list[bytes], must_deny: frozenset[int]) -> None:
    """Each call in ``must_deny`` is denied by at least one filter of the chain, for any arguments."""
    allowed = []
    try:
        for nr in sorted(must_deny):
            if not any(seccomp_bpf.denies(program, nr) for program in programs):
                allowed.append(nr)
    except seccomp_bpf.Unprovable as exc:
        raise UnsafeArchiveError(
            f"{name}: ferry cannot evaluate the process's seccomp filter ({exc}), so it cannot show that "
            "the filter denies what this host's default profile denies; refusing the archive."
        ) from exc
    if allowed:
        names = {nr: n for n, nr in SYSCALLS.items()}
        shown = ", ".join(names.get(nr, str(nr)) for nr in allowed[:12]) + (", ..." if len(allowed) > 12 else "")
        raise UnsafeArchiveError(
            f"{name}: the process's seccomp filter may allow {shown}, which this host's default seccomp "
            "profile denies to every container; refusing the archive."
        )


def _filter_chain(name: str, index: int, filters: list[Filter]) -> list[int]:
    """Follow a thread's filter chain through seccomp.img; returns the filters' indices."""
    seen: set[int] = set()
    chain: list[int] = []
    current: int | None = index
    while current is not None:
        if current >= len(filters):
            raise _bad(name, f"seccomp filter {current} does not exist ({len(filters)} in seccomp.img)")
        if current in seen:
            raise _bad(name, f"the seccomp filter chain loops at filter {current}")
        seen.add(current)
        chain.append(current)
        current = filters[current][1]
    return chain

"""CRIU core images against the spec's grants, and the bounded protobuf reader under them."""

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
from ferry.archive.criu_grants import Grants
from ferry.archive.criu_images import check_core_images
from ferry.errors import UnsafeArchiveError
from tests import criu_edit
from tests.criu_edit import FULL_CAPS, core_image

CHOWN, NET_BIND = 1 << 0, 1 << 10
SPEC_CAPS = ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]
MAGIC_SECCOMP = ci.IMG_COMMON_MAGIC.to_bytes(4, "little") + ci.SECCOMP_MAGIC.to_bytes(4, "little")


def spec(
    *, caps: list[str] = SPEC_CAPS, uid: int = 0, gid: int = 0, seccomp: bool = True, nnp: bool = False
) -> dict[str, Any]:
    sets = dict.fromkeys(("bounding", "effective", "permitted"), caps)
    out: dict[str, Any] = {
        "process": {"user": {"uid": uid, "gid": gid}, "capabilities": sets, "noNewPrivileges": nnp},
        "linux": {},
    }
    if seccomp:
        out["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO"}
    return out


def seccomp_img(*chain: int | None, insns: int = 4) -> bytes:
    """seccomp.img with one filter per item; the item is that filter's ``prev`` (None: no prev)."""
    filters = []
    for prev in chain:
        f: dict[int, list[tuple[int, pw.Value]]] = {1: [(pw.LENGTH, b"\x06\x00\x00\x00\x00\x00\xff\x7f" * insns)]}
        if prev is not None:
            f[2] = [(pw.VARINT, prev)]
        filters.append((pw.LENGTH, pw.encode_fields(f)))
    return criu_edit.image(MAGIC_SECCOMP, [pw.encode_fields({1: filters})])


def core(**kw: Any) -> bytes:
    kw.setdefault("caps", [CHOWN | NET_BIND, 0])
    kw.setdefault("seccomp_mode", 2)
    return core_image(**kw)


def images(*cores: bytes, seccomp: bytes | None = None) -> dict[str, bytes]:
    """Core images 1..n, each a task of its own in pstree.img."""
    out = {f"checkpoint/core-{i + 1}.img": c for i, c in enumerate(cores)}
    out["checkpoint/pstree.img"] = criu_edit.pstree_image(*([i + 1] for i in range(len(cores))))
    if seccomp is not None:
        out["checkpoint/seccomp.img"] = seccomp
    return out


def edit_core(data: bytes, *, tc: dict[int, Any] | None = None, thread: dict[int, Any] | None = None) -> bytes:
    """Set (value) or drop (None) fields of the task core or the thread core of an image."""
    magic, (entry,) = criu_edit.entries(data)
    c = pw.fields(entry)
    for number, edits in ((ci.CORE_TC, tc), (ci.CORE_THREAD_CORE, thread)):
        if not edits:
            continue
        inner = pw.fields(pw.message(c, number) or b"")
        for field, value in edits.items():
            if value is None:
                inner.pop(field, None)
            else:
                inner[field] = [(pw.LENGTH if isinstance(value, bytes) else pw.VARINT, value)]
        c[number] = [(pw.LENGTH, pw.encode_fields(inner))]
    return criu_edit.image(magic, [pw.encode_fields(c)])


def refused(imgs: dict[str, bytes], grants: Grants, match: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=match):
        check_core_images(imgs, grants)


GRANTS = Grants.from_spec(spec())


# -- Grants ------------------------------------------------------------------------------------


def test_grants_from_a_podman_spec() -> None:
    g = Grants.from_spec(spec(uid=1000, gid=100, nnp=True) | {})
    assert (g.effective, g.permitted, g.bounding, g.inheritable, g.ambient) == (1025, 1025, 1025, 0, 0)
    assert (g.uid, g.gid, g.seccomp, g.no_new_privs) == (1000, 100, True, True)
    assert Grants.from_spec({}) == Grants()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([], "spec.dump is not a JSON object"),
        ({"process": []}, "process is not a JSON object"),
        ({"process": {"capabilities": {"effective": "CAP_SYS_ADMIN"}}}, "not a list of capability names"),
        ({"process": {"capabilities": {"effective": ["CAP_NOPE"]}}}, "not a capability ferry knows"),
        ({"process": {"capabilities": {"bounding": [7]}}}, "not a capability ferry knows"),
        ({"process": {"user": {"uid": -1}}}, "uid is not a valid numeric id"),
        ({"process": {"user": {"uid": True}}}, "uid is not a valid numeric id"),
        ({"process": {"user": {"gid": 1 << 32}}}, "gid is not a valid numeric id"),
        ({"process": {"user": {"additionalGids": 5}}}, "additionalGids is not a list"),
        ({"process": {"noNewPrivileges": "yes"}}, "noNewPrivileges"),
    ],
)
def test_odd_specs_are_refused(bad: object, match: str) -> None:
    with pytest.raises(UnsafeArchiveError, match=match):
        Grants.from_spec(bad)


# -- capabilities ------------------------------------------------------------------------------


def test_an_honest_core_passes() -> None:
    check_core_images(images(core(), core(caps=[CHOWN, 0]), seccomp=seccomp_img(None)), GRANTS)


def test_no_core_images_is_nothing_to_check() -> None:
    check_core_images({}, GRANTS)
    check_core_images(images(), GRANTS)


def test_only_the_threads_pstree_names_are_checked_and_each_must_be_there() -> None:
    # Seen on real dumps: Podman leaves an earlier dump's core images of children long gone in the
    # checkpoint directory; their filter indices point past the new seccomp.img. CRIU never reads them.
    stale = edit_core(core(caps=FULL_CAPS), thread={ci.THREAD_SECCOMP_FILTER: 1})
    imgs = images(core(), seccomp=seccomp_img(None)) | {"checkpoint/core-202.img": stale}
    check_core_images(imgs, GRANTS)
    # ...but once pstree.img names it (a further thread of task 1, or a task), it is checked
    for tasks in ([[1, 202]], [[1], [202]]):
        named = imgs | {"checkpoint/pstree.img": criu_edit.pstree_image(*tasks)}
        refused(named, GRANTS, "core-202.img")
    refused(imgs | {"checkpoint/pstree.img": criu_edit.pstree_image([1, 7])}, GRANTS, "no checkpoint/core-7.img")
    no_tree = {k: v for k, v in imgs.items() if not k.endswith("pstree.img")}
    refused(no_tree, GRANTS, "no checkpoint/pstree.img")
    refused(imgs | {"checkpoint/pstree.img": b"garbage!"}, GRANTS, "pstree.img: the CRIU image cannot be read")


@pytest.mark.parametrize(("cap_set", "number"), list(ci.CREDS_CAPS.items()))
def test_each_capability_set_is_bounded_by_its_spec_set(cap_set: str, number: int) -> None:
    magic, (entry,) = criu_edit.entries(core())
    c = pw.fields(entry)
    thread = pw.fields(pw.message(c, ci.CORE_THREAD_CORE) or b"")
    creds = pw.fields(pw.message(thread, ci.THREAD_CREDS) or b"")
    creds[number] = [(pw.VARINT, 1 << 21), (pw.VARINT, 0)]  # CAP_SYS_ADMIN
    thread[ci.THREAD_CREDS] = [(pw.LENGTH, pw.encode_fields(creds))]
    c[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    bad = criu_edit.image(magic, [pw.encode_fields(c)])
    refused(images(bad, seccomp=seccomp_img(None)), GRANTS, f"CAP_SYS_ADMIN in its {cap_set} capability set")


def test_the_full_set_names_the_extra_capabilities() -> None:
    with pytest.raises(UnsafeArchiveError) as raised:
        check_core_images(images(core(caps=[0xFFFFFFFF, 0x800001FF]), seccomp=seccomp_img(None)), GRANTS)
    message = str(raised.value)
    assert "CAP_SYS_ADMIN" in message and "CAP_CHECKPOINT_RESTORE" in message and "capability 63" in message
    assert "CAP_CHOWN," not in message  # granted ones are not listed


def test_packed_capability_words_are_read_too() -> None:
    magic, (entry,) = criu_edit.entries(core())
    c = pw.fields(entry)
    thread = pw.fields(pw.message(c, ci.CORE_THREAD_CORE) or b"")
    creds = pw.fields(pw.message(thread, ci.THREAD_CREDS) or b"")
    creds[11] = [(pw.LENGTH, pw.encode_varint(0xFFFFFFFF) + pw.encode_varint(0x1FF))]
    thread[ci.THREAD_CREDS] = [(pw.LENGTH, pw.encode_fields(creds))]
    c[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    bad = criu_edit.image(magic, [pw.encode_fields(c)])
    refused(images(bad, seccomp=seccomp_img(None)), GRANTS, "effective capability set")


# -- users and groups --------------------------------------------------------------------------


def test_root_is_refused_when_the_spec_user_is_not_root() -> None:
    grants = Grants.from_spec(spec(uid=1000, gid=1000))
    refused(images(core(uid=0), seccomp=seccomp_img(None)), grants, r"uid/euid/suid/fsuid 0 \(root\)")


def test_a_switch_to_another_non_root_user_is_allowed() -> None:
    grants = Grants.from_spec(spec(uid=0))
    check_core_images(images(core(uid=33), seccomp=seccomp_img(None)), grants)
    grants = Grants.from_spec(spec(uid=1000, gid=0))
    check_core_images(images(core(uid=33), seccomp=seccomp_img(None)), grants)


def test_a_uid_that_protobuf_c_truncates_to_root_is_root() -> None:
    grants = Grants.from_spec(spec(uid=1000, gid=0))
    refused(images(core(uid=1 << 32), seccomp=seccomp_img(None)), grants, "0 \\(root\\)")


def test_group_root_needs_the_spec_to_grant_it() -> None:
    grants = Grants.from_spec(spec(uid=1000, gid=1000))
    bad = core(uid=1000)  # core_image leaves every gid at 0
    refused(images(bad, seccomp=seccomp_img(None)), grants, "group 0")
    with_root_group = Grants.from_spec(spec(uid=1000, gid=0))
    check_core_images(images(bad, seccomp=seccomp_img(None)), with_root_group)
    extra = spec(uid=1000, gid=1000)
    extra["process"]["user"]["additionalGids"] = [0]
    check_core_images(images(bad, seccomp=seccomp_img(None)), Grants.from_spec(extra))


def test_missing_ids_are_unreadable() -> None:
    magic, (entry,) = criu_edit.entries(core())
    c = pw.fields(entry)
    thread = pw.fields(pw.message(c, ci.CORE_THREAD_CORE) or b"")
    creds = pw.fields(pw.message(thread, ci.THREAD_CREDS) or b"")
    del creds[ci.CREDS_IDS["fsuid"]]
    thread[ci.THREAD_CREDS] = [(pw.LENGTH, pw.encode_fields(creds))]
    c[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    refused(images(criu_edit.image(magic, [pw.encode_fields(c)])), GRANTS, "lack fsuid")


# -- seccomp, no_new_privs, missing state ------------------------------------------------------


@pytest.mark.parametrize("mode", [None, 0, 1, 3])
def test_seccomp_must_be_filter_mode_when_the_spec_has_seccomp(mode: int | None) -> None:
    refused(images(core(seccomp_mode=mode), seccomp=seccomp_img(None)), GRANTS, "seccomp mode")


def test_seccomp_off_is_fine_when_the_spec_has_none() -> None:
    check_core_images(images(core(seccomp_mode=None)), Grants.from_spec(spec(seccomp=False)))


def test_the_old_per_task_mode_cannot_switch_seccomp_off() -> None:
    bad = edit_core(core(), tc={ci.TC_OLD_SECCOMP_MODE: 0})
    refused(images(bad, seccomp=seccomp_img(None)), GRANTS, "seccomp mode 0, 2")


def test_filter_mode_needs_its_filters() -> None:
    refused(images(core()), GRANTS, "no seccomp.img")
    refused(images(core(), seccomp=seccomp_img()), GRANTS, "no seccomp.img")
    missing = edit_core(core(), thread={ci.THREAD_SECCOMP_FILTER: 5})
    refused(images(missing, seccomp=seccomp_img(None)), GRANTS, "filter 5 does not exist")
    old = edit_core(core(), tc={ci.TC_OLD_SECCOMP_FILTER: 3})
    refused(images(old, seccomp=seccomp_img(None, 0)), GRANTS, "filter 3 does not exist")


def test_filter_chains_are_followed_and_loops_refused() -> None:
    chained = edit_core(core(), thread={ci.THREAD_SECCOMP_FILTER: 2})
    check_core_images(images(chained, seccomp=seccomp_img(None, 0, 1)), GRANTS)
    refused(images(chained, seccomp=seccomp_img(2, 0, 1)), GRANTS, "loops")
    refused(images(chained, seccomp=seccomp_img(None, 9, 1)), GRANTS, "filter 9 does not exist")


@pytest.mark.parametrize("insns", [0, 4097])
def test_filters_must_be_whole_bpf_programs(insns: int) -> None:
    refused(images(core(), seccomp=seccomp_img(None, insns=insns)), GRANTS, "not a whole BPF program")


def test_no_new_privs_when_the_spec_sets_it() -> None:
    grants = Grants.from_spec(spec(nnp=True))
    refused(images(core(), seccomp=seccomp_img(None)), grants, "noNewPrivileges")
    magic, (entry,) = criu_edit.entries(core())
    c = pw.fields(entry)
    thread = pw.fields(pw.message(c, ci.CORE_THREAD_CORE) or b"")
    creds = pw.fields(pw.message(thread, ci.THREAD_CREDS) or b"")
    creds[ci.CREDS_NO_NEW_PRIVS] = [(pw.VARINT, 1)]
    thread[ci.THREAD_CREDS] = [(pw.LENGTH, pw.encode_fields(creds))]
    c[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    check_core_images(images(criu_edit.image(magic, [pw.encode_fields(c)]), seccomp=seccomp_img(None)), grants)


def test_a_live_task_without_credentials_is_refused_and_a_zombie_is_not() -> None:
    no_thread = edit_core(core(), thread=None)
    magic, (entry,) = criu_edit.entries(core())
    c = pw.fields(entry)
    del c[ci.CORE_THREAD_CORE]
    live = criu_edit.image(magic, [pw.encode_fields(c)])
    refused(images(live), GRANTS, "live task without thread state")
    zombie = edit_core(live, tc={ci.TC_TASK_STATE: ci.TASK_DEAD})
    check_core_images(images(zombie), GRANTS)
    no_creds = edit_core(no_thread, thread={ci.THREAD_CREDS: None})
    refused(images(no_creds, seccomp=seccomp_img(None)), GRANTS, "carries no credentials")


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


# -- the filters themselves, against the calls the host's default profile denies ----------------


def test_an_allow_all_filter_is_refused_when_calls_must_be_denied() -> None:
    grants = Grants.from_spec(spec(), must_deny=frozenset({246}))
    refused(images(core(), seccomp=seccomp_img(None)), grants, "may allow kexec_load")


def test_a_chain_passes_when_one_filter_denies_each_call() -> None:
    kill_kexec = b"\x20\x00\x00\x00\x00\x00\x00\x00" + b"\x15\x00\x01\x00\xf6\x00\x00\x00"
    kill_kexec += b"\x06\x00\x00\x00\x00\x00\xff\x7f" + b"\x06\x00\x00\x00\x01\x00\x05\x00"
    filters = [(pw.LENGTH, pw.encode_fields({1: [(pw.LENGTH, kill_kexec)]}))]
    filters.append((pw.LENGTH, pw.encode_fields({1: [(pw.LENGTH, b"\x06\x00\x00\x00\x00\x00\xff\x7f")], 2: [(0, 0)]})))
    img = criu_edit.image(MAGIC_SECCOMP, [pw.encode_fields({1: filters})])
    grants = Grants.from_spec(spec(), must_deny=frozenset({246}))
    chained = edit_core(core(), thread={ci.THREAD_SECCOMP_FILTER: 1})
    check_core_images(images(chained, seccomp=img), grants)
    refused(images(chained, seccomp=img), Grants.from_spec(spec(), must_deny=frozenset({246, 0})), "may allow read")


def test_a_filter_ferry_cannot_evaluate_is_refused() -> None:
    odd = [(pw.LENGTH, pw.encode_fields({1: [(pw.LENGTH, b"\x28\x00\x00\x00\x00\x00\x00\x00" * 2)]}))]
    img = criu_edit.image(MAGIC_SECCOMP, [pw.encode_fields({1: odd})])
    grants = Grants.from_spec(spec(), must_deny=frozenset({246}))
    refused(images(core(), seccomp=img), grants, "cannot evaluate")


# -- LSM labels and AppArmor policy -------------------------------------------------------------


def _with_creds(data: bytes, **fields: int | bytes) -> bytes:
    magic, (entry,) = criu_edit.entries(data)
    c = pw.fields(entry)
    thread = pw.fields(pw.message(c, ci.CORE_THREAD_CORE) or b"")
    creds = pw.fields(pw.message(thread, ci.THREAD_CREDS) or b"")
    for number, value in fields.items():
        creds[int(number.removeprefix("f"))] = [(pw.LENGTH if isinstance(value, bytes) else pw.VARINT, value)]
    thread[ci.THREAD_CREDS] = [(pw.LENGTH, pw.encode_fields(creds))]
    c[ci.CORE_THREAD_CORE] = [(pw.LENGTH, pw.encode_fields(thread))]
    return criu_edit.image(magic, [pw.encode_fields(c)])


def test_an_lsm_profile_must_be_the_specs_own() -> None:
    confined = spec()
    confined["process"]["apparmorProfile"] = "containers-default-0.50.1"
    grants = Grants.from_spec(confined)
    own = _with_creds(core(), f15=b"containers-default-0.50.1")
    check_core_images(images(own, seccomp=seccomp_img(None)), grants)
    other = _with_creds(core(), f15=b"unconfined-ish")
    refused(images(other, seccomp=seccomp_img(None)), grants, "LSM profile 'unconfined-ish'")
    refused(images(own, seccomp=seccomp_img(None)), GRANTS, "LSM profile")  # the spec sets none
    refused(images(_with_creds(core(), f16=b"x"), seccomp=seccomp_img(None)), GRANTS, "socket-creation")


def test_apparmor_policy_is_never_restored() -> None:
    refused(images(_with_creds(core(), f17=b"policy"), seccomp=seccomp_img(None)), GRANTS, "AppArmor policy")
    with_ns = {**images(core(), seccomp=seccomp_img(None)), "checkpoint/apparmor.img": b""}
    refused(with_ns, GRANTS, "AppArmor namespaces")
    assert ci.is_collected("checkpoint/apparmor.img")


def test_lsm_fields_of_the_spec_must_be_strings() -> None:
    with pytest.raises(UnsafeArchiveError, match="apparmorProfile is not a string"):
        Grants.from_spec({"process": {"apparmorProfile": ["x"]}})


# -- resource limits ---------------------------------------------------------------------------


def _with_rlimits(data: bytes, limits: dict[int, tuple[int, int]]) -> bytes:
    entries = [
        (pw.LENGTH, pw.encode_fields({1: [(pw.VARINT, cur)], 2: [(pw.VARINT, hard)]}))
        for cur, hard in (limits.get(i, ((1 << 64) - 1, (1 << 64) - 1)) for i in range(16))
    ]
    return edit_core(data, tc={ci.TC_RLIMITS: pw.encode_fields({1: entries})})


def _limited(**extra: Any) -> dict[str, Any]:
    out = spec(**extra)
    out["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    return out


def test_a_hard_limit_may_be_lowered_but_not_raised() -> None:
    grants = Grants.from_spec(_limited())
    assert grants.rlimits == ((7, 1024),)
    lowered = _with_rlimits(core(), {7: (512, 512)})
    check_core_images(images(lowered, seccomp=seccomp_img(None)), grants)
    raised = _with_rlimits(core(), {7: (1024, 1 << 20)})
    refused(images(raised, seccomp=seccomp_img(None)), grants, "hard RLIMIT_NOFILE of 1048576, above the 1024")
    unlimited = _with_rlimits(core(), {})  # every limit unlimited, NOFILE included
    refused(images(unlimited, seccomp=seccomp_img(None)), grants, "RLIMIT_NOFILE")


def test_cap_sys_resource_lets_the_container_raise_limits_itself() -> None:
    grants = Grants.from_spec(_limited(caps=[*SPEC_CAPS, "CAP_SYS_RESOURCE"]))
    raised = _with_rlimits(core(caps=[CHOWN | NET_BIND | 1 << 24, 0]), {7: (1024, 1 << 20)})
    check_core_images(images(raised, seccomp=seccomp_img(None)), grants)


@pytest.mark.parametrize("bad", [5, [{"type": "RLIMIT_NOPE", "hard": 1}], [{"type": "RLIMIT_NOFILE", "hard": -1}]])
def test_odd_rlimits_in_the_spec_are_refused(bad: object) -> None:
    with pytest.raises(UnsafeArchiveError, match="process.rlimits"):
        Grants.from_spec({"process": {"rlimits": bad}})


def _without_task_core(data: bytes) -> bytes:
    """The core image of a further thread of a process: CRIU writes no task core for it."""
    magic, (entry,) = criu_edit.entries(data)
    c = pw.fields(entry)
    c.pop(ci.CORE_TC, None)
    return criu_edit.image(magic, [pw.encode_fields(c)])


def test_a_further_thread_without_seccomp_state_shares_its_process_filters() -> None:
    # What CRIU 4.2 wrote for Redis's and MariaDB's threads: seccomp state on the main thread only.
    thread = _without_task_core(core(seccomp_mode=None))
    check_core_images(images(core(), thread, seccomp=seccomp_img(None)), GRANTS)
    # ...but a thread that records seccomp state must record filter mode, and a main thread must too
    refused(images(core(), _without_task_core(core(seccomp_mode=0)), seccomp=seccomp_img(None)), GRANTS, "mode 0")
    refused(images(core(seccomp_mode=None), thread, seccomp=seccomp_img(None)), GRANTS, "seccomp mode")


def test_a_zombie_is_not_held_to_its_dangling_seccomp_filter() -> None:
    # Seen on a real dump: a child that had exited, not yet reaped, named a filter seccomp.img lacks.
    zombie = edit_core(core(), tc={1: ci.TASK_DEAD}, thread={ci.THREAD_SECCOMP_FILTER: 1})
    check_core_images(images(core(), zombie, seccomp=seccomp_img(None)), GRANTS)
    live = edit_core(core(), thread={ci.THREAD_SECCOMP_FILTER: 1})
    refused(images(core(), live, seccomp=seccomp_img(None)), GRANTS, "does not exist")

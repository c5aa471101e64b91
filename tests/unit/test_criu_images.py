"""CRIU core images against the spec's grants: capabilities, users and groups, LSM labels,
resource limits."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.archive import criu_images as ci
from ferry.archive import protowire as pw
from ferry.archive.criu_grants import Grants
from ferry.archive.criu_images import check_core_images
from ferry.errors import UnsafeArchiveError
from tests import criu_edit
from tests.criu_edit import FULL_CAPS
from tests.unit.criu_cases import (
    CHOWN,
    GRANTS,
    NET_BIND,
    SPEC_CAPS,
    core,
    edit_core,
    images,
    refused,
    seccomp_img,
    spec,
)

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

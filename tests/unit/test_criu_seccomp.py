"""CRIU core images against the spec's seccomp: filter mode, the filters and their chains,
no_new_privs, threads and zombies."""

from __future__ import annotations

import pytest

from ferry.archive import criu_images as ci
from ferry.archive import protowire as pw
from ferry.archive.criu_grants import Grants
from ferry.archive.criu_images import check_core_images
from tests import criu_edit
from tests.unit.criu_cases import (
    GRANTS,
    MAGIC_SECCOMP,
    core,
    edit_core,
    images,
    refused,
    seccomp_img,
    spec,
)

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

"""A member's own judgement of membership proposals (sans-I/O): joins need its operator's admission and
bond, expulsions its own observation or its operator's approval, leaves the leaver, and changes come
one at a time and no faster than configured. Plus the offline clock that survives restarts, the
records in the store and the admission command."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from coincurve import PrivateKey

from frostfed.federation import change_judgement as cj
from frostfed.federation.change_judgement import (
    CommandVerdict,
    OfflineClock,
    OperatorDecisions,
    OwnRecords,
    judge_proposal,
)
from frostfed.federation.config import ConfigError, MembershipSettings, membership_settings
from frostfed.federation.membership.admission import ask_admission_command
from frostfed.federation.store import Store
from frostfed.federation.transition import Proposal

IDS = [PrivateKey(bytes([i + 1]) * 32).public_key.format() for i in range(6)]
ME, ATTACKER, HONEST, JOINER = IDS[0], IDS[1], IDS[2], IDS[5]
MEMBERS = IDS[:5]
SETTINGS = MembershipSettings(
    min_bond_sats=50_000, expel_after_seconds=600, min_change_interval_blocks=6, min_change_interval_seconds=0
)
RECORDS = OwnRecords(tip_height=1000, now=10_000.0)
NONE = OperatorDecisions()


def proposal(kind: str, subject: bytes, proposer: bytes = ATTACKER, bond: int = 0) -> Proposal:
    members = [*MEMBERS, subject] if kind == "join" else [m for m in MEMBERS if m != subject]
    return Proposal(
        epoch=1,
        kind=kind,
        members=members,
        threshold=(2 * len(members)) // 3 + 1,
        addresses={m: "127.0.0.1:1" for m in members},
        proposer=proposer,
        subject=subject,
        bond_sats=bond,
        bond_locktime=2000 if kind == "join" else 0,
    )


# joins


def test_a_join_nobody_admitted_is_refused_whatever_its_bond() -> None:
    d = judge_proposal(proposal("join", JOINER, bond=10**9), SETTINGS, RECORDS, NONE)
    assert not d.accept and d.code == cj.NOT_ADMITTED and JOINER.hex() in d.reason


@pytest.mark.parametrize(
    ("decisions", "settings"),
    [
        (OperatorDecisions(admitted={JOINER: 0}), SETTINGS),
        (NONE, replace(SETTINGS, admit=frozenset({JOINER}))),
        (OperatorDecisions(command=CommandVerdict(True, "known hub")), SETTINGS),
    ],
    ids=["frost-admit", "config allowlist", "admission command"],
)
def test_an_admitted_joiner_with_the_minimum_bond_is_accepted(decisions, settings) -> None:
    assert judge_proposal(proposal("join", JOINER, bond=50_000), settings, RECORDS, decisions).accept


def test_an_admission_of_another_joiner_does_not_count() -> None:
    d = judge_proposal(proposal("join", JOINER, bond=50_000), SETTINGS, RECORDS, OperatorDecisions({IDS[4]: 0}))
    assert d.code == cj.NOT_ADMITTED


def test_the_bond_must_reach_the_larger_of_the_configured_and_the_admitted_minimum() -> None:
    admitted = OperatorDecisions(admitted={JOINER: 200_000})
    low = judge_proposal(proposal("join", JOINER, bond=199_999), SETTINGS, RECORDS, admitted)
    assert not low.accept and low.code == cj.BOND_TOO_SMALL and "200000" in low.reason
    assert judge_proposal(proposal("join", JOINER, bond=200_000), SETTINGS, RECORDS, admitted).accept
    config_min = judge_proposal(
        proposal("join", JOINER, bond=49_999), SETTINGS, RECORDS, OperatorDecisions(admitted={JOINER: 0})
    )
    assert config_min.code == cj.BOND_TOO_SMALL and "50000" in config_min.reason


def test_a_refusing_admission_command_gives_its_reason() -> None:
    d = judge_proposal(
        proposal("join", JOINER, bond=50_000),
        SETTINGS,
        RECORDS,
        OperatorDecisions(command=CommandVerdict(False, "who?")),
    )
    assert d.code == cj.NOT_ADMITTED and "who?" in d.reason


# expulsions


def test_an_expulsion_of_a_member_this_member_sees_online_is_refused() -> None:
    d = judge_proposal(proposal("expel", HONEST), SETTINGS, replace(RECORDS, offline_seconds={HONEST: 0.0}), NONE)
    assert not d.accept and d.code == cj.NOT_APPROVED and "0 s" in d.reason


def test_an_expulsion_needs_the_full_offline_time_seen_by_this_member() -> None:
    short = replace(RECORDS, offline_seconds={HONEST: 599.0})
    assert judge_proposal(proposal("expel", HONEST), SETTINGS, short, NONE).code == cj.NOT_APPROVED
    long = replace(RECORDS, offline_seconds={HONEST: 600.0})
    assert judge_proposal(proposal("expel", HONEST), SETTINGS, long, NONE).accept


def test_without_expel_after_seconds_only_the_operator_expels() -> None:
    never = replace(SETTINGS, expel_after_seconds=0)
    records = replace(RECORDS, offline_seconds={HONEST: 10**6})
    d = judge_proposal(proposal("expel", HONEST), never, records, NONE)
    assert d.code == cj.NOT_APPROVED and "operator" in d.reason
    approved = OperatorDecisions(expel_approved=frozenset({HONEST}))
    assert judge_proposal(proposal("expel", HONEST), never, RECORDS, approved).accept
    other = OperatorDecisions(expel_approved=frozenset({IDS[3]}))
    assert judge_proposal(proposal("expel", HONEST), never, RECORDS, other).code == cj.NOT_APPROVED


# leaves, one change at a time, the interval


def test_a_leave_is_accepted_only_from_the_leaver() -> None:
    assert judge_proposal(proposal("leave", ATTACKER, proposer=ATTACKER), SETTINGS, RECORDS, NONE).accept
    d = judge_proposal(proposal("leave", HONEST, proposer=ATTACKER), SETTINGS, RECORDS, NONE)
    assert d.code == cj.LEAVE_BY_OTHER


def test_a_second_change_while_one_is_in_progress_is_refused() -> None:
    p = proposal("leave", ATTACKER, proposer=ATTACKER)
    busy = replace(RECORDS, change_in_progress="another-nonce")
    assert judge_proposal(p, SETTINGS, busy, NONE).code == cj.IN_PROGRESS
    assert judge_proposal(p, SETTINGS, replace(RECORDS, change_in_progress=p.nonce), NONE).accept


@pytest.mark.parametrize(("since", "ok"), [(0, False), (5, False), (6, True), (100, True)])
def test_changes_wait_the_configured_blocks(since: int, ok: bool) -> None:
    p = proposal("leave", ATTACKER, proposer=ATTACKER)
    records = replace(RECORDS, last_change_height=RECORDS.tip_height - since)
    d = judge_proposal(p, SETTINGS, records, NONE)
    assert d.accept is ok and (ok or d.code == cj.TOO_SOON)


def test_changes_wait_the_configured_seconds_and_the_interval_comes_before_any_approval() -> None:
    settings = replace(SETTINGS, min_change_interval_blocks=0, min_change_interval_seconds=3600)
    p = proposal("join", JOINER, bond=10**6)
    admitted = OperatorDecisions(admitted={JOINER: 0})
    recent = replace(RECORDS, last_change_time=RECORDS.now - 3599)
    d = judge_proposal(p, settings, recent, admitted)
    assert d.code == cj.TOO_SOON and "3600 s" in d.reason
    assert judge_proposal(p, settings, replace(RECORDS, last_change_time=RECORDS.now - 3600), admitted).accept


# the offline clock


def test_the_clock_counts_only_time_between_ticks_and_resets_when_a_peer_is_heard() -> None:
    clock = OfflineClock(max_step=10)
    clock.tick(100.0, {HONEST: False}, watching=True)
    clock.tick(105.0, {HONEST: False}, watching=True)
    clock.tick(200.0, {HONEST: False}, watching=True)  # a suspended process: at most max_step counts
    assert clock.seconds(HONEST) == 15.0
    assert clock.tick(201.0, {HONEST: True}, watching=True) == {HONEST}
    assert clock.seconds(HONEST) == 0.0
    assert clock.tick(202.0, {HONEST: True}, watching=True) == set()  # already at zero: nothing to save


def test_the_clock_does_not_count_before_the_member_has_watched_long_enough() -> None:
    clock = OfflineClock()
    clock.tick(0.0, {HONEST: False}, watching=False)
    clock.tick(5.0, {HONEST: False}, watching=False)
    assert clock.seconds(HONEST) == 0.0
    clock.tick(7.0, {HONEST: False}, watching=True)
    assert clock.seconds(HONEST) == 2.0


def test_the_clock_forgets_peers_no_longer_watched() -> None:
    clock = OfflineClock({HONEST: 50.0, IDS[3]: 7.0})
    clock.tick(1.0, {HONEST: False}, watching=True)
    assert set(clock.watched()) == {HONEST}


def test_a_restart_neither_forgets_nor_invents_an_outage(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.sqlite")
    clock = OfflineClock(store.offline_seconds())
    for now in range(0, 301, 10):
        clock.tick(float(now), {HONEST: False, IDS[3]: True}, watching=True)
    store.save_offline_seconds(clock.offline)
    store.close()
    store = Store(tmp_path / "m.sqlite")  # the member restarts an hour later
    clock = OfflineClock(store.offline_seconds())
    assert clock.seconds(HONEST) == 300.0  # not forgotten
    clock.tick(3900.0, {HONEST: False, IDS[3]: False}, watching=True)
    clock.tick(3901.0, {HONEST: False, IDS[3]: False}, watching=True)
    assert clock.seconds(HONEST) == 301.0 and clock.seconds(IDS[3]) == 1.0  # its own downtime not counted
    store.close()


# the store's records


def test_approvals_are_kept_per_kind_and_withdrawn(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.sqlite")
    store.approve("join", JOINER, 70_000)
    store.approve("join", JOINER, 90_000)
    store.approve("expel", HONEST)
    assert store.approvals("join") == {JOINER: 90_000} and store.approvals("expel") == {HONEST: 0}
    assert store.withdraw_approval("join", JOINER) and not store.withdraw_approval("join", JOINER)
    assert store.approvals("join") == {}
    store.close()


def test_refusals_are_recorded_once_each_and_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.sqlite")
    p = proposal("expel", HONEST)
    store.record_refusal("proposal", p.to_body(), cj.NOT_APPROVED, "online")
    store.record_refusal("proposal", p.to_body(), cj.NOT_APPROVED, "online")  # a repeat
    store.record_refusal("transition", p.to_body(), "not_this_change", "never adopted")
    rows = store.refusals()
    assert [(r["stage"], r["code"]) for r in rows] == [("proposal", cj.NOT_APPROVED), ("transition", "not_this_change")]
    assert rows[0]["subject"] == HONEST.hex() and rows[0]["proposer"] == ATTACKER.hex() and rows[0]["epoch"] == 1
    for i in range(30):
        store.record_refusal("proposal", {**p.to_body(), "nonce": f"n{i}"}, cj.NOT_APPROVED, "spam", keep=10)
    assert len(store.refusals()) == 10 and store.refusals()[-1]["nonce"] == "n29"
    store.close()


# the configuration


def test_the_membership_table_reads_the_new_settings() -> None:
    s = membership_settings(
        {
            "admit": [JOINER.hex().upper()],
            "admission_command": "/bin/true",
            "min_change_interval_blocks": 0,
            "min_change_interval_seconds": 60,
        }
    )
    assert s.admit == frozenset({JOINER}) and s.admission_command == "/bin/true"
    assert s.min_change_interval_blocks == 0 and s.min_change_interval_seconds == 60
    assert MembershipSettings().min_change_interval_blocks == 6 and MembershipSettings().admit == frozenset()


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"admit": JOINER.hex()}, "membership.admit"),
        ({"admit": ["02" + "zz" * 32]}, "membership.admit[0]"),
        ({"admission_command": " "}, "membership.admission_command"),
        ({"min_change_interval_blocks": -1}, "membership.min_change_interval_blocks"),
    ],
)
def test_bad_membership_settings_are_named(table, named) -> None:
    with pytest.raises(ConfigError) as e:
        membership_settings(table)
    assert named in str(e.value)


# the admission command


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "admit.py"
    path.write_text(body)
    return f"{sys.executable} {path}"


def test_the_admission_command_reads_the_proposal_and_answers(tmp_path: Path) -> None:
    cmd = _script(
        tmp_path,
        "import json, sys\np = json.load(sys.stdin)\n"
        "print(json.dumps({'accept': p['bond_sats'] >= 70000, 'reason': 'bond ' + str(p['bond_sats'])}))\n",
    )
    body = proposal("join", JOINER, bond=60_000).to_body()
    assert ask_admission_command(cmd, body) == CommandVerdict(False, "bond 60000")
    assert ask_admission_command(cmd, {**body, "bond_sats": 70_000}).accept


@pytest.mark.parametrize(
    ("program", "said"),
    [
        ("import sys\nsys.exit(3)\n", "exited with 3"),
        ("print('yes')\n", "not {'accept': bool}"),
        ('print(\'{"accept": "yes"}\')\n', "not {'accept': bool}"),
    ],
)
def test_a_broken_admission_command_admits_no_one(tmp_path: Path, program: str, said: str) -> None:
    verdict = ask_admission_command(_script(tmp_path, program), proposal("join", JOINER).to_body())
    assert not verdict.accept and said in verdict.reason


def test_a_missing_or_silent_admission_command_is_a_refusal(tmp_path: Path) -> None:
    assert "could not run" in ask_admission_command(str(tmp_path / "nothing-here"), {}).reason
    slow = _script(tmp_path, "import time\ntime.sleep(5)\n")
    assert "no answer within" in ask_admission_command(slow, {}, timeout=0.3).reason

"""The coordinator-free DKG run: members exchange only broadcasts and all end with the same key."""

import os
import random

import pytest
from coincurve import PrivateKey

from frostfed.federation.dkg_run import DkgFailed, DkgRun, chain_code_of
from frostfed.frost import chilldkg
from frostfed.frost.certeq import certeq_cert_len, certeq_participant_step


def _run_all(runs: dict[bytes, DkgRun], tamper=None) -> None:
    """Deliver every broadcast to every member, in a shuffled order, as the echo broadcast would."""
    queue = [(me, s, p) for me, r in runs.items() for s, p in r.start()]
    rng = random.Random(7)
    while queue:
        rng.shuffle(queue)
        sender, session, payload = queue.pop()
        for me, run in runs.items():
            data = tamper(sender, session, payload) if tamper else payload
            for s, p in run.on_delivered(session, sender, data):
                queue.append((me, s, p))


def _members(n: int) -> tuple[list[bytes], dict[bytes, bytes]]:
    keys = [PrivateKey() for _ in range(n)]
    ids = [k.public_key.format() for k in keys]
    return ids, {i: os.urandom(32) for i in ids}


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5)])
def test_members_agree_on_the_epoch_key(t: int, n: int) -> None:
    ids, seeds = _members(n)
    runs = {m: DkgRun(0, 1, ids, t, m, seeds[m]) for m in ids}
    _run_all(runs)
    results = [r.result for r in runs.values()]
    assert all(r is not None for r in results)
    assert len({r.group_key for r in results}) == 1
    assert len({r.chain_code for r in results}) == 1
    assert len({tuple(r.pubshares) for r in results}) == 1
    assert len({r.secshare for r in results}) == n


def test_a_corrupted_first_round_message_fails_the_run() -> None:
    ids, seeds = _members(3)
    runs = {m: DkgRun(0, 1, ids, 2, m, seeds[m]) for m in ids}
    bad = ids[1]

    def tamper(sender: bytes, session: str, payload: bytes) -> bytes:
        if sender == bad and session.endswith("/r1"):
            return payload[:-1] + bytes([payload[-1] ^ 1])
        return payload

    with pytest.raises(DkgFailed):
        _run_all(runs, tamper)
    assert all(r.result is None for r in runs.values())


def _deliver_all(runs: dict[bytes, DkgRun], tamper=None, extra=()) -> dict[bytes, DkgFailed]:
    """Like `_run_all`, but a member whose run fails stops there and the others carry on; returns the
    failures by member. `extra` are (sender, session, payload) broadcasts injected at the start."""
    failures: dict[bytes, DkgFailed] = {}
    queue = [*extra, *((me, s, p) for me, r in runs.items() for s, p in r.start())]
    rng = random.Random(11)
    while queue:
        rng.shuffle(queue)
        sender, session, payload = queue.pop()
        if sender in failures:
            continue  # a failed member broadcasts nothing more
        for me, run in runs.items():
            if me in failures:
                continue
            data = tamper(sender, session, payload) if tamper else payload
            try:
                out = run.on_delivered(session, sender, data)
            except DkgFailed as e:
                failures[me] = e
                continue
            queue.extend((me, s, p) for s, p in out)
    return failures


def _fresh(n: int, t: int) -> tuple[list[bytes], dict[bytes, DkgRun]]:
    ids, seeds = _members(n)
    return ids, {m: DkgRun(3, 2, ids, t, m, seeds[m]) for m in ids}


def _replace_in(round_name: str, who: bytes, new: bytes):
    def tamper(sender: bytes, session: str, payload: bytes) -> bytes:
        return new if sender == who and session.endswith("/" + round_name) else payload

    return tamper


@pytest.mark.parametrize(
    "bad_key",
    [b"", b"\x02" * 32, b"\x02" * 34, b"\x04" + b"\x01" * 32, b"\x02" + b"\x00" * 32, b"\x03" + b"\xff" * 32],
)
def test_a_malformed_host_key_fails_the_run_blaming_its_sender(bad_key: bytes) -> None:
    ids, runs = _fresh(4, 3)
    failures = _deliver_all(runs, _replace_in("hostkey", ids[2], bad_key))
    assert set(failures) == set(ids)  # everyone sees the same broadcast and blames the same member
    assert all(f.blame == ids[2] and "host public key" in f.reason for f in failures.values())
    assert all(r.result is None for r in runs.values())


def test_two_members_with_the_same_host_key_fail_the_run() -> None:
    ids, runs = _fresh(3, 2)
    copied = runs[ids[0]].start()[0][1]
    failures = _deliver_all(runs, _replace_in("hostkey", ids[1], copied))
    assert set(failures) == set(ids)
    assert all("same host key" in f.reason for f in failures.values())


def test_a_broadcast_from_a_non_member_is_blamed_on_it() -> None:
    ids, runs = _fresh(3, 2)
    stranger = PrivateKey().public_key.format()
    hostkey = runs[ids[0]].start()[0][1]
    run = runs[ids[1]]
    with pytest.raises(DkgFailed) as e:
        run.on_delivered(run.session("hostkey"), stranger, hostkey)
    assert e.value.blame == stranger and "non-member" in e.value.reason
    assert run.hostkeys == {}


@pytest.mark.parametrize(
    "session", ["dkg/3/2/r3", "dkg/3/2/", "dkg/3/1/hostkey", "dkg/4/2/hostkey", "hostkey", "", "dkg/3/2/r1/x"]
)
def test_an_unknown_round_or_another_attempt_is_blamed_on_the_sender(session: str) -> None:
    ids, runs = _fresh(3, 2)
    run = runs[ids[0]]
    with pytest.raises(DkgFailed) as e:
        run.on_delivered(session, ids[1], run.start()[0][1])
    assert e.value.blame == ids[1]
    assert run.hostkeys == {}


def test_a_second_message_in_one_round_is_blamed_on_the_sender() -> None:
    ids, runs = _fresh(3, 2)
    run = runs[ids[0]]
    key = runs[ids[1]].start()[0][1]
    run.on_delivered(run.session("hostkey"), ids[1], key)
    with pytest.raises(DkgFailed) as e:
        run.on_delivered(run.session("hostkey"), ids[1], key)
    assert e.value.blame == ids[1]


def test_a_corrupted_first_round_message_is_blamed_on_its_sender() -> None:
    t, n = 3, 5
    ids, runs = _fresh(n, t)
    bad = ids[3]

    def tamper(sender: bytes, session: str, payload: bytes) -> bytes:
        if sender == bad and session.endswith("/r1"):
            at = 33 * t + 9  # inside the proof of possession
            return payload[:at] + bytes([payload[at] ^ 1]) + payload[at + 1 :]
        return payload

    failures = _deliver_all(runs, tamper)
    assert set(failures) >= set(ids) - {bad}  # (the sender's own view may not show it)
    assert all(f.blame == bad for f in failures.values())
    assert all(r.result is None for r in runs.values())


def test_a_truncated_first_round_message_is_blamed_on_its_sender() -> None:
    ids, runs = _fresh(4, 3)

    def tamper(sender: bytes, session: str, payload: bytes) -> bytes:
        return payload[:-1] if sender == ids[0] and session.endswith("/r1") else payload

    failures = _deliver_all(runs, tamper)
    assert set(failures) == set(ids)
    assert all(f.blame == ids[0] for f in failures.values())


def _add_to_encrypted_share(pmsg1: bytes, t: int, n: int, recipient: int, delta: int) -> bytes:
    """The encryption pad is added mod the group order, so adding to a ciphertext adds to the share
    (layout of participant message 1: t commitments, proof of possession, pubnonce, n shares)."""
    start = 33 * t + 64 + 33 + 32 * recipient
    c = (int.from_bytes(pmsg1[start : start + 32], "big") + delta) % GROUP_ORDER
    return pmsg1[:start] + c.to_bytes(32, "big") + pmsg1[start + 32 :]


GROUP_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.mark.parametrize(("t", "n", "cheater", "victim"), [(2, 3, 2, 0), (3, 5, 0, 4), (3, 5, 1, 3)])
def test_a_wrong_share_to_one_member_is_found_by_its_investigation(t: int, n: int, cheater: int, victim: int) -> None:
    ids, runs = _fresh(n, t)

    def tamper(sender: bytes, session: str, payload: bytes) -> bytes:
        if sender == ids[cheater] and session.endswith("/r1"):
            return _add_to_encrypted_share(payload, t, n, victim, 1)
        return payload

    failures = _deliver_all(runs, tamper)
    # Only the victim can tell: the others' shares are fine, and they wait for its second message in vain.
    assert set(failures) == {ids[victim]}
    assert failures[ids[victim]].blame == ids[cheater]
    assert "wrong share" in failures[ids[victim]].reason
    assert all(r.result is None for r in runs.values())


def test_a_bad_transcript_signature_is_blamed_on_its_sender() -> None:
    ids, runs = _fresh(4, 3)

    def tamper(sender: bytes, session: str, payload: bytes) -> bytes:
        if sender == ids[1] and session.endswith("/r2"):
            return payload[:40] + bytes([payload[40] ^ 1]) + payload[41:]
        return payload

    failures = _deliver_all(runs, tamper)
    assert set(failures) == set(ids)
    assert all(f.blame == ids[1] for f in failures.values())
    assert all(r.result is None for r in runs.values())


def test_a_wrong_length_transcript_signature_is_blamed_on_its_sender() -> None:
    ids, runs = _fresh(3, 2)
    failures = _deliver_all(runs, _replace_in("r2", ids[2], b"\x00" * 63))
    assert set(failures) == set(ids)
    assert all(f.blame == ids[2] for f in failures.values())


def test_an_honest_run_through_the_collecting_delivery_succeeds() -> None:
    """The fault tests' delivery loop, without faults, ends with one key (so their failures are the faults')."""
    _, runs = _fresh(5, 3)
    assert _deliver_all(runs) == {}
    assert len({r.result.group_key for r in runs.values() if r.result}) == 1
    assert all(r.result is not None for r in runs.values())


def test_a_member_re_signing_its_part_of_the_certificate_cannot_move_the_chain_code() -> None:
    """The certificate holds each member's BIP340 signature over the transcript; a member can sign
    again with another nonce and get a second valid certificate. The recovery data then still yields
    the same key, so it must also yield the same chain code: otherwise whoever hands the proposer (or a
    transition request, or a member that missed the end) that copy makes the transition pay the new
    key at a path no member derives, and the coins are stranded."""
    ids, seeds = _members(3)
    runs = {m: DkgRun(1, 1, ids, 2, m, seeds[m]) for m in ids}
    _run_all(runs)
    honest = runs[ids[0]].result
    assert honest is not None
    cert_len = certeq_cert_len(3)
    transcript, cert = honest.recovery[:-cert_len], honest.recovery[-cert_len:]
    resigned = certeq_participant_step(seeds[ids[2]], 2, transcript, os.urandom(32))
    assert resigned != cert[128:]
    forged = transcript + cert[:128] + resigned
    out, _ = chilldkg.coordinator_recover(forged)  # a valid certificate: it verifies
    assert bytes(out.thresh_pk) == honest.group_key
    assert chain_code_of(forged) == honest.chain_code

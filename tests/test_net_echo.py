"""Echo broadcast: agreement among honest members, and equivocators caught with a checkable proof."""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest
from fault_channel import FaultPlan, FaultyChannel
from netcluster import member_key, start_noise_members

from frostfed.net.echo import EchoBroadcast, EchoCore
from frostfed.net.echo_base import (
    Aborted,
    Delivered,
    EchoError,
    EchoViolation,
    EquivocationDetected,
    EquivocationProof,
    InvalidProof,
    Transmit,
    message_digest,
    sign_statement,
    verify_equivocation_proof,
)
from frostfed.net.mux import ECHO_PORT, Mux
from frostfed.net.reliable import ReliableChannel
from frostfed.net.wire_echo import EchoSend, Statement

SID = hashlib.sha256(b"session").digest()
KEYS = [member_key(i) for i in range(7)]


def run(cores: dict[bytes, EchoCore], queue: list[tuple[bytes, Transmit]], rng: random.Random):
    """Deliver every frame once in random order (a reliable but unordered network)."""
    events: dict[bytes, list] = {p: [] for p in cores}
    while queue:
        src, ev = queue.pop(rng.randrange(len(queue)))
        if ev.peer not in cores:
            continue
        for out in cores[ev.peer].receive(src, ev.frame):
            (queue.append((ev.peer, out)) if isinstance(out, Transmit) else events[ev.peer].append(out))
    return events


def make(n: int):
    cores = [EchoCore(k) for k in KEYS[:n]]
    ids = [c.node_id for c in cores]
    for c in cores:
        assert c.start_session(SID, ids) == []
    return cores, ids


@pytest.mark.parametrize("seed", range(3))
def test_every_member_delivers_every_message(seed):
    cores, ids = make(5)
    queue, local = [], {c.node_id: [] for c in cores}
    for c in cores:
        for ev in c.broadcast(SID, b"round one of " + c.node_id):
            (queue.append((c.node_id, ev)) if isinstance(ev, Transmit) else local[c.node_id].append(ev))
    events = run({c.node_id: c for c in cores}, queue, random.Random(seed))
    for c in cores:
        got = {e.sender: e.payload for e in local[c.node_id] + events[c.node_id]}
        assert got == {i: b"round one of " + i for i in ids}
        assert all(isinstance(e, Delivered) for e in events[c.node_id])


def equivocate(evil_key: bytes, ids: list[bytes], split: int) -> list[tuple[bytes, Transmit]]:
    """The evil member sends one message to the first `split` members, another to the rest."""
    evil = ids[0]
    out = []
    for k, peer in enumerate(ids[1:]):
        payload = b"to the first group" if k < split else b"to the second group"
        st = sign_statement(evil_key, SID, evil, message_digest(payload))
        out.append((evil, Transmit(peer, EchoSend(st, payload).encode())))
    return out


@pytest.mark.parametrize("split", [1, 2, 3])
def test_equivocating_sender_is_caught_by_every_honest_member(split):
    cores, ids = make(5)
    honest = {c.node_id: c for c in cores[1:]}
    queue = equivocate(KEYS[0], ids, split)
    for c in cores[1:]:
        queue += [(c.node_id, ev) for ev in c.broadcast(SID, b"honest " + c.node_id)]
    events = run(honest, queue, random.Random(split))
    for pid, c in honest.items():
        aborts = [e for e in events[pid] if isinstance(e, Aborted)]
        assert len(aborts) == 1
        assert verify_equivocation_proof(aborts[0].proof) == ids[0]
        assert c.proof(SID) == aborts[0].proof
        assert not any(isinstance(e, Delivered) and e.sender == ids[0] for e in events[pid])
        with pytest.raises(EquivocationDetected):
            c.broadcast(SID, b"again")


def test_proof_round_trips_and_forgeries_fail():
    a = sign_statement(KEYS[0], SID, EchoCore(KEYS[0]).node_id, message_digest(b"a"))
    b = sign_statement(KEYS[0], SID, a.sender, message_digest(b"b"))
    proof = EquivocationProof(a, b)
    assert EquivocationProof.decode(proof.encode()) == proof
    assert verify_equivocation_proof(proof) == a.sender
    with pytest.raises(InvalidProof, match="agree"):
        verify_equivocation_proof(EquivocationProof(a, a))
    forged = Statement(b.session_id, b.sender, b.digest, b.signer, bytes(64))
    with pytest.raises(InvalidProof, match="signature"):
        verify_equivocation_proof(EquivocationProof(a, forged))
    # Another member's statements cannot convict the sender.
    c = sign_statement(KEYS[1], SID, a.sender, message_digest(b"c"))
    with pytest.raises(InvalidProof, match="not signed by the sender"):
        verify_equivocation_proof(EquivocationProof(a, c))
    other = sign_statement(KEYS[0], hashlib.sha256(b"other").digest(), a.sender, message_digest(b"b"))
    with pytest.raises(InvalidProof, match="different broadcasts"):
        verify_equivocation_proof(EquivocationProof(a, other))


def test_forbidden_frames_are_violations():
    cores, ids = make(3)
    b = cores[1]
    st = sign_statement(KEYS[0], SID, ids[0], message_digest(b"m"))
    with pytest.raises(EchoViolation, match="on behalf of another"):
        b.receive(ids[2], EchoSend(st, b"m").encode())
    with pytest.raises(EchoViolation, match="does not match"):
        b.receive(ids[0], EchoSend(st, b"other").encode())
    bad = Statement(st.session_id, st.sender, st.digest, st.signer, bytes(64))
    with pytest.raises(EchoViolation, match="invalid sender signature"):
        b.receive(ids[0], EchoSend(bad, b"m").encode())
    stranger = sign_statement(KEYS[6], SID, EchoCore(KEYS[6]).node_id, message_digest(b"m"))
    with pytest.raises(EchoViolation, match="not a member"):
        b.receive(stranger.sender, EchoSend(stranger, b"m").encode())


def test_frames_before_the_session_starts_are_kept():
    cores = [EchoCore(k) for k in KEYS[:3]]
    ids = [c.node_id for c in cores]
    cores[0].start_session(SID, ids)
    cores[1].start_session(SID, ids)
    sent = cores[0].broadcast(SID, b"early")
    to_c = [ev for ev in sent if isinstance(ev, Transmit) and ev.peer == ids[2]]
    assert cores[2].receive(ids[0], to_c[0].frame) == []
    events = cores[2].start_session(SID, ids)
    assert any(isinstance(e, Transmit) for e in events)  # c echoes once it knows the session
    with pytest.raises(EchoError):
        cores[2].start_session(SID, ids)


# -- over Noise + reliable delivery ---------------------------------------------------------------


async def start_echo_members(n: int, plan: FaultPlan | None = None):
    noise = await start_noise_members(n)
    stack = []
    for i, ch in enumerate(noise):
        lower = FaultyChannel(ch, plan, seed=i) if plan else ch
        mux = Mux(ReliableChannel(lower, rto_initial=0.05, rto_max=0.4))
        stack.append((mux, EchoBroadcast(mux.port(ECHO_PORT), member_key(i))))
    return noise, stack


@pytest.mark.parametrize("n", [5, 10])
async def test_members_agree_over_a_faulty_network(n):
    noise, stack = await start_echo_members(n, FaultPlan(cut=0.01))
    ids = [ch.node_id for ch in noise]
    try:
        for _, echo in stack:
            echo.start_session(SID, ids)
        for _, echo in stack:
            await echo.broadcast(SID, b"commitment of " + echo.node_id)
        async with asyncio.timeout(30):
            results = [await echo.receive_all(SID, ids) for _, echo in stack]
        assert all(r == {i: b"commitment of " + i for i in ids} for r in results)
    finally:
        for mux, _ in stack:
            await mux.close()


@pytest.mark.parametrize("plan", [None, FaultPlan(cut=0.01)], ids=["clean", "faulty"])
async def test_equivocation_over_the_network_leaves_every_honest_member_with_the_proof(plan):
    noise, stack = await start_echo_members(5, plan)
    ids = [ch.node_id for ch in noise]
    try:
        for _, echo in stack:
            echo.start_session(SID, ids)
        for _, echo in stack[1:]:
            await echo.broadcast(SID, b"honest")
        evil_port = stack[0][1].channel
        for _, ev in equivocate(KEYS[0], ids, split=2):
            await evil_port.send(ev.peer, ev.frame)
        for _, echo in stack[1:]:
            with pytest.raises(EquivocationDetected) as info:
                async with asyncio.timeout(20):
                    await echo.receive_all(SID, ids)
            assert verify_equivocation_proof(info.value.proof) == ids[0]
            assert echo.proof(SID) == info.value.proof
    finally:
        for mux, _ in stack:
            await mux.close()


def test_a_closed_session_drops_late_frames_and_can_start_afresh():
    cores, ids = make(2)
    a, b = cores
    sent = [ev for ev in a.broadcast(SID, b"late") if isinstance(ev, Transmit)]
    b.close_session(SID)
    assert b.receive(ids[0], sent[0].frame) == []  # dropped, not kept as pending
    assert b.start_session(SID, ids) == []

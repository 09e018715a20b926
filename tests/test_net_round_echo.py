"""Round echo broadcast: honest members agree on the whole round, equivocators are caught with a
checkable proof, and each member sends O(n) frames per round."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random

import pytest
from fault_channel import FaultPlan, FaultyChannel
from hypothesis import given, settings
from hypothesis import strategies as hst
from netcluster import member_key, node_id, start_noise_members

from frostfed.net.echo import EchoBroadcast
from frostfed.net.echo_base import (
    Aborted,
    Delivered,
    EchoError,
    EchoViolation,
    EquivocationDetected,
    EquivocationProof,
    Transmit,
    message_digest,
    sign_statement,
    verify_equivocation_proof,
)
from frostfed.net.links import open_noise_links
from frostfed.net.mux import ECHO_PORT, ROUND_ECHO_PORT, Mux
from frostfed.net.reliable import ReliableChannel
from frostfed.net.round_echo import RoundEchoBroadcast, RoundEchoCore, sign_echo, verify_echo
from frostfed.net.wire import (
    MAX_ECHO_PAYLOAD,
    WIRE_VERSION,
    Malformed,
    Oversized,
    TrailingBytes,
    Truncated,
    UnknownType,
    UnknownVersion,
    WireError,
)
from frostfed.net.wire_echo import Statement
from frostfed.net.wire_round import MAX_ROUND_MEMBERS, ROUND_ENTRY_LEN, RoundAbort, RoundEcho, RoundSend, decode_round

SID = hashlib.sha256(b"round session").digest()
KEYS = [member_key(i) for i in range(11)]


def run(cores: dict[bytes, RoundEchoCore], queue: list[tuple[bytes, Transmit]], rng: random.Random):
    """Deliver every frame once in random order (a reliable but unordered network); returns each
    member's events and the number of frames each member sent."""
    events: dict[bytes, list] = {p: [] for p in cores}
    sent: dict[bytes, int] = {p: 0 for p in cores}
    for src, _ in queue:
        if src in sent:
            sent[src] += 1
    while queue:
        src, ev = queue.pop(rng.randrange(len(queue)))
        if ev.peer not in cores:
            continue
        for out in cores[ev.peer].receive(src, ev.frame):
            if isinstance(out, Transmit):
                queue.append((ev.peer, out))
                sent[ev.peer] += 1
            else:
                events[ev.peer].append(out)
    return events, sent


def make(n: int):
    cores = [RoundEchoCore(k) for k in KEYS[:n]]
    ids = [c.node_id for c in cores]
    for c in cores:
        assert c.start_session(SID, ids) == []
    return cores, ids


def broadcast_all(cores, payload=lambda i: b"round one of " + i):
    queue, local = [], {c.node_id: [] for c in cores}
    for c in cores:
        for ev in c.broadcast(SID, payload(c.node_id)):
            (queue.append((c.node_id, ev)) if isinstance(ev, Transmit) else local[c.node_id].append(ev))
    return queue, local


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (2, 0), (5, 0), (5, 1), (5, 2), (10, 3)])
def test_every_member_delivers_the_whole_round_with_2n_frames(n, seed):
    cores, ids = make(n)
    queue, local = broadcast_all(cores)
    events, sent = run({c.node_id: c for c in cores}, queue, random.Random(seed))
    for c in cores:
        evs = local[c.node_id] + events[c.node_id]
        assert all(isinstance(e, Delivered) for e in evs)
        # the whole round at once, in member order
        assert [(e.sender, e.payload) for e in evs] == [(i, b"round one of " + i) for i in ids]
        assert c.proof(SID) is None
        # one message and one echo to each other member: O(n), not O(n²)
        assert sent[c.node_id] == 2 * (n - 1)


def equivocate(evil_key: bytes, ids: list[bytes], groups: list[bytes | None]) -> list[tuple[bytes, Transmit]]:
    """The evil member ids[0] sends groups[k] to ids[k + 1] (nothing where None)."""
    evil = ids[0]
    out = []
    for peer, payload in zip(ids[1:], groups, strict=True):
        if payload is not None:
            st = sign_statement(evil_key, SID, evil, message_digest(payload))
            out.append((evil, Transmit(peer, RoundSend(st, payload).encode())))
    return out


def assert_all_caught(honest, events, evil):
    for pid, c in honest.items():
        assert not any(isinstance(e, Delivered) for e in events[pid])
        aborts = [e for e in events[pid] if isinstance(e, Aborted)]
        assert len(aborts) == 1
        assert verify_equivocation_proof(aborts[0].proof) == evil
        assert verify_equivocation_proof(EquivocationProof.decode(aborts[0].proof.encode())) == evil
        assert c.proof(SID) == aborts[0].proof
        with pytest.raises(EquivocationDetected):
            c.broadcast(SID, b"again")


@pytest.mark.parametrize("split", [1, 2, 3])
def test_equivocating_sender_is_caught_by_every_honest_member(split):
    cores, ids = make(5)
    honest = {c.node_id: c for c in cores[1:]}
    groups = [b"to the first group" if k < split else b"to the second group" for k in range(4)]
    queue = equivocate(KEYS[0], ids, groups)
    for c in cores[1:]:
        queue += [(c.node_id, ev) for ev in c.broadcast(SID, b"honest " + c.node_id)]
    events, _ = run(honest, queue, random.Random(split))
    assert_all_caught(honest, events, ids[0])


def test_a_member_left_out_learns_of_the_equivocation_too():
    """The evil member sends nothing to ids[3] and ids[4]: they never hold its message, yet end up with
    the proof (from the echoes they see and from the members that found it)."""
    cores, ids = make(5)
    honest = {c.node_id: c for c in cores[1:]}
    queue = equivocate(KEYS[0], ids, [b"one", b"two", None, None])
    for c in cores[1:]:
        queue += [(c.node_id, ev) for ev in c.broadcast(SID, b"honest " + c.node_id)]
    events, _ = run(honest, queue, random.Random(7))
    assert_all_caught(honest, events, ids[0])


def test_a_second_message_from_the_same_sender_is_an_equivocation():
    cores, ids = make(3)
    b = cores[1]
    b.broadcast(SID, b"b")
    for payload in (b"first", b"second"):
        st = sign_statement(KEYS[0], SID, ids[0], message_digest(payload))
        events = b.receive(ids[0], RoundSend(st, payload).encode())
    assert [type(e) for e in events] == [Transmit, Transmit, Aborted]
    assert verify_equivocation_proof(events[-1].proof) == ids[0]


def honest_echo_of(cores, ids, signer: int):
    """The echo `signer` would send once it holds every member's message."""
    sts = [sign_statement(KEYS[k], SID, ids[k], message_digest(b"m" + ids[k])) for k in range(len(ids))]
    return sts, sign_echo(KEYS[signer], SID, sts)


def test_forbidden_sends_are_violations():
    cores, ids = make(3)
    b = cores[1]
    st = sign_statement(KEYS[0], SID, ids[0], message_digest(b"m"))
    with pytest.raises(EchoViolation, match="on behalf of another"):
        b.receive(ids[2], RoundSend(st, b"m").encode())
    with pytest.raises(EchoViolation, match="does not match"):
        b.receive(ids[0], RoundSend(st, b"other").encode())
    bad = Statement(st.session_id, st.sender, st.digest, st.signer, bytes(64))
    with pytest.raises(EchoViolation, match="invalid sender signature"):
        b.receive(ids[0], RoundSend(bad, b"m").encode())
    stranger = sign_statement(KEYS[6], SID, RoundEchoCore(KEYS[6]).node_id, message_digest(b"m"))
    with pytest.raises(EchoViolation, match="not a member"):
        b.receive(stranger.sender, RoundSend(stranger, b"m").encode())


def test_bad_echoes_are_violations_and_do_not_count():
    cores, ids = make(3)
    b = cores[1]
    sts, echo = honest_echo_of(cores, ids, 0)
    assert verify_echo(echo)
    forged_sig = RoundEcho(SID, ids[0], echo.statements, sign_echo(KEYS[2], SID, sts).signature)
    assert not verify_echo(forged_sig)
    with pytest.raises(EchoViolation, match="invalid echo signature"):
        b.receive(ids[0], forged_sig.encode())
    with pytest.raises(EchoViolation, match="not signed by the member"):
        b.receive(ids[2], echo.encode())
    shuffled = sign_echo(KEYS[0], SID, [sts[1], sts[0], sts[2]])
    with pytest.raises(EchoViolation, match="in order"):
        b.receive(ids[0], shuffled.encode())
    short = sign_echo(KEYS[0], SID, sts[:2])
    with pytest.raises(EchoViolation, match="in order"):
        b.receive(ids[0], short.encode())
    # None of them counted: the honest echo from the same member is still taken.
    assert b.receive(ids[0], echo.encode()) == []


def test_an_echo_with_a_forged_statement_convicts_the_echoer_not_the_sender():
    cores, ids = make(3)
    b = cores[1]
    sts, _ = honest_echo_of(cores, ids, 0)
    b.receive(ids[0], RoundSend(sts[0], b"m" + ids[0]).encode())
    forged = Statement(SID, ids[0], message_digest(b"framed"), ids[0], bytes(64))
    lying = sign_echo(KEYS[2], SID, [forged, sts[1], sts[2]])
    with pytest.raises(EchoViolation, match="forged statement"):
        b.receive(ids[2], lying.encode())
    assert b.proof(SID) is None


def test_a_forged_statement_echoed_before_the_message_arrives_is_dropped_later():
    cores, ids = make(3)
    b = cores[1]
    sts, _ = honest_echo_of(cores, ids, 0)
    forged = Statement(SID, ids[0], message_digest(b"framed"), ids[0], bytes(64))
    lying = sign_echo(KEYS[2], SID, [forged, sts[1], sts[2]])
    assert b.receive(ids[2], lying.encode()) == []  # nothing to compare with yet
    b.receive(ids[0], RoundSend(sts[0], b"m" + ids[0]).encode())
    b.broadcast(SID, b"m" + ids[1])
    events = b.receive(ids[2], RoundSend(sts[2], b"m" + ids[2]).encode())
    events += b.receive(ids[0], sign_echo(KEYS[0], SID, sts).encode())
    assert b.proof(SID) is None
    assert not any(isinstance(e, Delivered) for e in events)  # ids[2]'s lying echo was dropped
    events = b.receive(ids[2], sign_echo(KEYS[2], SID, sts).encode())  # its honest echo counts
    assert [(e.sender, e.payload) for e in events] == [(i, b"m" + i) for i in ids]


def test_sessions_start_late_and_close():
    cores = [RoundEchoCore(k) for k in KEYS[:3]]
    ids = [c.node_id for c in cores]
    cores[0].start_session(SID, ids)
    sent = [ev for ev in cores[0].broadcast(SID, b"early") if isinstance(ev, Transmit)]
    assert cores[2].receive(ids[0], sent[1].frame) == []  # kept for later
    cores[2].start_session(SID, ids)
    with pytest.raises(EchoError):
        cores[2].start_session(SID, ids)
    with pytest.raises(EchoError, match="already broadcast"):
        cores[0].broadcast(SID, b"twice")
    # the early message counts: after the others broadcast, core 2 echoes without a resend
    cores[1].start_session(SID, ids)
    queue = [(ids[0], ev) for ev in sent] + [(ids[k], ev) for k in (1, 2) for ev in cores[k].broadcast(SID, b"x")]
    queue = [(s, ev) for s, ev in queue if not (s == ids[0] and ev.peer == ids[2])]
    events, _ = run({c.node_id: c for c in cores}, queue, random.Random(1))
    assert all(any(isinstance(e, Delivered) for e in events[i]) for i in ids)
    cores[1].close_session(SID)
    assert cores[1].receive(ids[0], sent[0].frame) == []
    assert cores[1].start_session(SID, ids) == []


def test_session_arguments_are_checked():
    core = RoundEchoCore(KEYS[0])
    with pytest.raises(EchoError, match="32 bytes"):
        core.start_session(b"short", [core.node_id])
    with pytest.raises(EchoError, match="include this member"):
        core.start_session(SID, [RoundEchoCore(KEYS[1]).node_id])
    with pytest.raises(EchoError, match="not started"):
        core.broadcast(SID, b"x")


# -- over Noise + reliable delivery ---------------------------------------------------------------


async def start_round_members(n: int, plan: FaultPlan | None = None):
    noise = await start_noise_members(n)
    stack = []
    for i, ch in enumerate(noise):
        lower = FaultyChannel(ch, plan, seed=i) if plan else ch
        mux = Mux(ReliableChannel(lower, rto_initial=0.05, rto_max=0.4))
        stack.append((mux, RoundEchoBroadcast(mux.port(ROUND_ECHO_PORT), member_key(i))))
    return noise, stack


@pytest.mark.parametrize("plan", [None, FaultPlan(cut=0.01)], ids=["clean", "faulty"])
@pytest.mark.parametrize("n", [5, 10])
async def test_members_agree_on_the_round_over_noise(n, plan):
    noise, stack = await start_round_members(n, plan)
    ids = [ch.node_id for ch in noise]
    seen: list[list[tuple[bytes, bytes]]] = [[] for _ in stack]
    try:
        for (_, rb), box in zip(stack, seen, strict=True):
            rb.on_deliver(lambda sid, sender, payload, box=box: box.append((sender, payload)))
            rb.start_session(SID, ids)
        for _, rb in stack:
            await rb.broadcast(SID, b"commitment of " + rb.node_id)
        async with asyncio.timeout(60):
            results = [await rb.receive_all(SID) for _, rb in stack]
        expected = {i: b"commitment of " + i for i in ids}
        assert all(r == expected for r in results)
        assert all(box == list(expected.items()) for box in seen)  # once per sender, in member order
    finally:
        for mux, _ in stack:
            await mux.close()


@pytest.mark.parametrize("plan", [None, FaultPlan(cut=0.01)], ids=["clean", "faulty"])
async def test_equivocation_over_noise_leaves_every_honest_member_with_the_proof(plan):
    noise, stack = await start_round_members(5, plan)
    ids = [ch.node_id for ch in noise]
    aborts: list[list] = [[] for _ in stack]
    delivered: list[list] = [[] for _ in stack]
    try:
        for (_, rb), box, dbox in zip(stack, aborts, delivered, strict=True):
            rb.on_abort(lambda sid, proof, box=box: box.append(proof))
            rb.on_deliver(lambda sid, sender, payload, box=dbox: box.append(sender))
            rb.start_session(SID, ids)
        for _, rb in stack[1:]:
            await rb.broadcast(SID, b"honest")
        evil_port = stack[0][1].channel
        for _, ev in equivocate(KEYS[0], ids, [b"one", b"one", b"two", b"two"]):
            await evil_port.send(ev.peer, ev.frame)
        for k, (_, rb) in enumerate(stack[1:], start=1):
            with pytest.raises(EquivocationDetected) as info:
                async with asyncio.timeout(30):
                    await rb.receive_all(SID)
            assert verify_equivocation_proof(info.value.proof) == ids[0]
            assert aborts[k] == [info.value.proof]
            assert delivered[k] == []
    finally:
        for mux, _ in stack:
            await mux.close()


async def test_garbage_and_bad_echoes_are_rejected_and_the_round_still_completes(caplog):
    noise, stack = await start_round_members(4)
    ids = [ch.node_id for ch in noise]
    caplog.set_level(logging.WARNING)
    try:
        for _, rb in stack:
            rb.start_session(SID, ids)
        evil_port = stack[0][1].channel
        sts = [sign_statement(KEYS[k], SID, ids[k], message_digest(b"x")) for k in range(4)]
        bad_sig = RoundEcho(SID, ids[0], tuple(sts), sign_echo(KEYS[1], SID, sts).signature)
        for peer in ids[1:]:
            await evil_port.send(peer, bad_sig.encode())
            await evil_port.send(peer, b"\x01\x32 not a round echo")
        for _, rb in stack:
            await rb.broadcast(SID, b"after the noise from " + rb.node_id)
        async with asyncio.timeout(60):
            results = [await rb.receive_all(SID) for _, rb in stack]
        assert all(r == {i: b"after the noise from " + i for i in ids} for r in results)
        text = caplog.text
        assert text.count("invalid echo signature") == 3
        assert "rejected input" in text and "round echo: " in text
    finally:
        for mux, _ in stack:
            await mux.close()


def test_decoded_echo_is_the_echo_sent():
    cores, ids = make(4)
    _, echo = honest_echo_of(cores, ids, 2)
    assert decode_round(echo.encode()) == echo


# -- decoder fuzzing ----------------------------------------------------------------------------

pubkeys = hst.sampled_from([bytes([2]) + bytes(32), bytes([3]) + b"\x11" * 32, bytes([2]) + b"\x22" * 32])
sids = hst.binary(min_size=32, max_size=32)
statements = hst.builds(
    Statement,
    session_id=sids,
    sender=pubkeys,
    digest=hst.binary(min_size=32, max_size=32),
    signer=pubkeys,
    signature=hst.binary(min_size=64, max_size=64),
)


@hst.composite
def round_echoes(draw) -> RoundEcho:
    sid = draw(sids)
    senders = draw(hst.lists(pubkeys, min_size=1, max_size=3, unique=True))
    sts = tuple(
        Statement(sid, s, draw(hst.binary(min_size=32, max_size=32)), s, draw(hst.binary(min_size=64, max_size=64)))
        for s in senders
    )
    return RoundEcho(sid, draw(pubkeys), sts, draw(hst.binary(min_size=64, max_size=64)))


round_frames = hst.one_of(
    hst.builds(RoundSend, statements, hst.binary(max_size=300)),
    round_echoes(),
    hst.builds(RoundAbort, statements, statements),
)


@given(round_frames)
def test_round_frames_round_trip(frame):
    assert decode_round(frame.encode()) == frame


@given(round_frames, hst.integers(0, 10_000))
def test_round_decoder_rejects_truncated_extended_and_unknown(frame, cut):
    encoded = frame.encode()
    with pytest.raises(Truncated):
        decode_round(encoded[: cut % len(encoded)])
    with pytest.raises(TrailingBytes):
        decode_round(encoded + b"\x00")
    with pytest.raises(UnknownVersion):
        decode_round(bytes([WIRE_VERSION + 1]) + encoded[1:])
    with pytest.raises(UnknownType):
        decode_round(encoded[:1] + b"\xee" + encoded[2:])


@given(round_echoes(), hst.sampled_from(["count0", "count_high", "repeat", "badkey"]))
def test_round_echo_decoder_refuses_impossible_fields(echo, how):
    encoded = bytearray(echo.encode())
    count_at = 2 + 32 + 33
    if how == "count0":
        encoded[count_at : count_at + 2] = (0).to_bytes(2, "big")
    elif how == "count_high":
        encoded[count_at : count_at + 2] = (MAX_ROUND_MEMBERS + 1).to_bytes(2, "big")
    elif how == "repeat":
        first = encoded[count_at + 2 : count_at + 2 + ROUND_ENTRY_LEN]
        encoded[count_at : count_at + 2] = (len(echo.statements) + 1).to_bytes(2, "big")
        encoded[count_at + 2 : count_at + 2] = first
    else:
        encoded[count_at + 2] = 4
    with pytest.raises(Malformed):
        decode_round(bytes(encoded))


def test_round_echo_encoder_refuses_what_it_cannot_carry():
    sid = bytes(32)
    a, b = bytes([2]) + bytes(32), bytes([3]) + bytes(32)
    with pytest.raises(Malformed):
        RoundEcho(sid, a, (Statement(sid, a, bytes(32), b, bytes(64)),), bytes(64)).encode()
    with pytest.raises(Malformed):
        RoundEcho(sid, a, (Statement(b"\x01" * 32, a, bytes(32), a, bytes(64)),), bytes(64)).encode()
    with pytest.raises(Oversized):
        RoundEcho(sid, a, (), bytes(64)).encode()
    with pytest.raises(Oversized):
        RoundSend(Statement(sid, a, bytes(32), a, bytes(64)), bytes(MAX_ECHO_PAYLOAD + 1)).encode()


@given(hst.binary(max_size=600))
@settings(max_examples=300)
def test_arbitrary_bytes_never_crash_the_decoder_or_the_core(data):
    peer = bytes([2]) + hashlib.sha256(b"peer").digest()
    with contextlib.suppress(WireError):
        decode_round(data)
    core = RoundEchoCore(hashlib.sha256(b"me").digest())
    core.start_session(bytes(32), [core.node_id, peer])
    with contextlib.suppress(WireError, EchoViolation):
        core.receive(peer, data)
    with contextlib.suppress(WireError, EchoViolation):
        core.receive(peer, b"\x01\x32" + bytes(32) + data)  # a round echo header of the started session


async def test_member_links_run_the_round_echo_beside_the_echo():
    """The same session id on both broadcasts: each has its own port, neither sees the other's frames."""
    keys = [member_key(i) for i in range(3)]
    ids = [node_id(k) for k in keys]
    links = [await open_noise_links(k, dict.fromkeys(ids)) for k in keys]
    for ln in links:
        for other in links:
            if other is not ln:
                ln.channel.set_address(other.channel.node_id, other.channel.listen_address)
    echo = [EchoBroadcast(ln.port(ECHO_PORT), k) for ln, k in zip(links, keys, strict=True)]
    try:
        for ln, e in zip(links, echo, strict=True):
            e.start_session(SID, ids)
            ln.round_echo.start_session(SID, ids)
        for ln, e, i in zip(links, echo, ids, strict=True):
            await ln.round_echo.broadcast(SID, b"round " + i)
            await e.broadcast(SID, b"echo " + i)
        async with asyncio.timeout(30):
            rounds = [await ln.round_echo.receive_all(SID) for ln in links]
            echoes = [await e.receive_all(SID, ids) for e in echo]
        assert all(r == {i: b"round " + i for i in ids} for r in rounds)
        assert all(r == {i: b"echo " + i for i in ids} for r in echoes)
    finally:
        for ln in links:
            await ln.close()

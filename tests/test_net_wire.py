"""Every decoder of the transport, fuzzed: valid frames round-trip, anything else is a specific error."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from coincurve import PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from frostfed.net.echo import EchoCore
from frostfed.net.echo_base import EchoViolation, EquivocationProof, InvalidProof
from frostfed.net.noise import BOLT8_PROLOGUE, Handshake, HandshakeError, TransportError
from frostfed.net.reliable_core import ReliableCore
from frostfed.net.wire import (
    MAX_ECHO_PAYLOAD,
    WIRE_VERSION,
    Oversized,
    TrailingBytes,
    Truncated,
    UnknownType,
    UnknownVersion,
    WireError,
)
from frostfed.net.wire_echo import EchoAbort, EchoEcho, EchoSend, Statement, decode_echo
from frostfed.net.wire_mux import decode_mux, encode_mux
from frostfed.net.wire_reliable import AckFrame, DataFrame, decode_bundle, decode_reliable, encode_bundle

u64 = st.integers(0, 2**64 - 1)
pubkeys = st.sampled_from([bytes([2]) + bytes(32), bytes([3]) + b"\x11" * 32])
statements = st.builds(
    Statement,
    session_id=st.binary(min_size=32, max_size=32),
    sender=pubkeys,
    digest=st.binary(min_size=32, max_size=32),
    signer=pubkeys,
    signature=st.binary(min_size=64, max_size=64),
)
data_frames = st.builds(
    lambda inc, base, extra, last, chunk: DataFrame(inc, base, min(base + extra, 2**64 - 1), last, chunk),
    u64,
    st.integers(0, 2**63),
    st.integers(0, 1000),
    st.booleans(),
    st.binary(max_size=300),
)
ack_frames = st.builds(AckFrame, u64, u64, u64, u64)
echo_frames = st.one_of(
    st.builds(EchoSend, statements, st.binary(max_size=300)),
    st.builds(EchoEcho, statements, statements),
    st.builds(EchoAbort, statements, statements),
)


@given(st.one_of(data_frames, ack_frames))
def test_reliable_frames_round_trip(frame):
    assert decode_reliable(frame.encode()) == frame


@given(echo_frames)
def test_echo_frames_round_trip(frame):
    assert decode_echo(frame.encode()) == frame


@given(st.integers(0, 255), st.binary(max_size=100))
def test_mux_round_trips(port, body):
    assert decode_mux(encode_mux(port, body)) == (port, body)


@given(st.lists(st.binary(max_size=50), min_size=1, max_size=8))
def test_bundles_round_trip(messages):
    assert decode_bundle(encode_bundle(messages), 1000) == messages


@given(st.binary(max_size=200))
def test_bundle_decoder_refuses_what_it_cannot_read(data):
    try:
        messages = decode_bundle(data, 100)
    except (Truncated, Oversized, WireError):
        return
    assert encode_bundle(messages) == data
    assert all(len(m) <= 100 for m in messages)


def _mutations(decoder, encoded: bytes, cut: int) -> None:
    with pytest.raises(Truncated):
        decoder(encoded[: cut % len(encoded)])
    with pytest.raises(TrailingBytes):
        decoder(encoded + b"\x00")
    with pytest.raises(UnknownVersion):
        decoder(bytes([WIRE_VERSION + 1]) + encoded[1:])
    with pytest.raises(UnknownType):
        decoder(encoded[:1] + b"\xee" + encoded[2:])


@given(st.one_of(data_frames, ack_frames), st.integers(0, 10_000))
def test_reliable_decoder_rejects_truncated_extended_and_unknown(frame, cut):
    _mutations(decode_reliable, frame.encode(), cut)


@given(echo_frames, st.integers(0, 10_000))
def test_echo_decoder_rejects_truncated_extended_and_unknown(frame, cut):
    _mutations(decode_echo, frame.encode(), cut)


def test_oversized_echo_payload_is_refused_before_reading_it():
    st_ = Statement(bytes(32), bytes([2]) + bytes(32), bytes(32), bytes([2]) + bytes(32), bytes(64))
    header = EchoSend(st_, b"").encode()[:-4]
    with pytest.raises(Oversized):
        decode_echo(header + (MAX_ECHO_PAYLOAD + 1).to_bytes(4, "big"))
    with pytest.raises(Oversized):
        EchoSend(st_, bytes(MAX_ECHO_PAYLOAD + 1)).encode()


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_decoders(data):
    for decoder in (decode_reliable, decode_echo, decode_mux, EquivocationProof.decode):
        with contextlib.suppress(WireError, InvalidProof):
            decoder(data)


@given(st.binary(max_size=400))
@settings(max_examples=200)
def test_arbitrary_bytes_never_crash_the_protocol_cores(data):
    peer = bytes([2]) + hashlib.sha256(b"peer").digest()
    with contextlib.suppress(WireError):
        ReliableCore(incarnation=1).receive(peer, data, 0.0)
    core = EchoCore(hashlib.sha256(b"me").digest())
    core.start_session(bytes(32), [core.node_id, peer])
    with contextlib.suppress(WireError, EchoViolation):
        core.receive(peer, data)


@given(st.binary(max_size=200))
@settings(max_examples=100)
def test_handshake_rejects_arbitrary_acts(data):
    responder = Handshake(b"\x21" * 32, None, prologue=BOLT8_PROLOGUE)
    with pytest.raises(HandshakeError):
        responder.read_act_one(data)


@given(st.lists(st.binary(max_size=80), max_size=6))
@settings(max_examples=100)
def test_transport_rejects_arbitrary_streams(chunks):
    responder_pub = PrivateKey(b"\x21" * 32).public_key.format()
    init = Handshake(b"\x11" * 32, responder_pub, prologue=b"p")
    resp = Handshake(b"\x21" * 32, None, prologue=b"p")
    act_three, _ = init.read_act_two(resp.read_act_one(init.act_one()))
    transport = resp.read_act_three(act_three)
    out, raised = [], False
    try:
        for c in chunks:
            out += transport.feed(c)
    except TransportError:
        raised = True
    assert out == []
    # 18 bytes make an encrypted length header, which forged bytes cannot authenticate.
    assert raised == (sum(len(c) for c in chunks) >= 18)

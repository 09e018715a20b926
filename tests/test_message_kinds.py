"""The typed messages: each kind reads back what it wrote, and anything else is a MessageError.

Every kind is fuzzed with arbitrary bodies and with single-field mutations of a valid one."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frostfed.federation.messages import (
    Address,
    DkgHello,
    EpochRecovery,
    Heartbeat,
    Kind,
    Message,
    MessageError,
    SignDone,
    SignReady,
    SignReject,
    SignSession,
    SignShare,
    Typed,
    decode,
)

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NONCE = bytes([2]) + b"\x11" * 32 + bytes([3]) + b"\x22" * 32

SAMPLES: list[Typed] = [
    SignReady("r-1", (NONCE, NONCE)),
    SignReject("r-1", "bad_fee: too high"),
    SignSession("r-1", 3, (0, 2, 4), ((NONCE,), (NONCE,), (NONCE,))),
    SignShare("r-1", 3, (b"\x01" * 32,), (NONCE,)),
    SignDone("r-1", "broadcast", "ab" * 32),
    SignDone("r-1", "failed", ""),
    DkgHello(1, 7),
    EpochRecovery(2, b"\x00\x01recovery"),
    Heartbeat(1_700_000_000),
    Heartbeat(1_700_000_000, 1, "cd" * 32),
    Address(0, 41),
]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_kind_reads_back_what_it_wrote(msg: Typed) -> None:
    wire = decode(msg.encode())
    assert wire.kind == msg.KIND
    assert type(msg).decode(wire) == msg


def test_wire_names_are_the_kinds_and_unique() -> None:
    assert len({k.value for k in Kind}) == len(Kind)
    assert all(0 < len(k.value) <= 32 for k in Kind)
    assert {type(m).KIND for m in SAMPLES} == {
        Kind.SIGN_READY,
        Kind.SIGN_REJECT,
        Kind.SIGN_SESSION,
        Kind.SIGN_SHARE,
        Kind.SIGN_DONE,
        Kind.DKG_HELLO,
        Kind.EPOCH_RECOVERY,
        Kind.HEARTBEAT,
        Kind.ADDRESS,
    }


@pytest.mark.parametrize(
    ("cls", "body", "problem"),
    [
        (SignReady, {"id": "r", "pubnonces": ["02" * 33]}, "must be 66 bytes"),
        (SignReady, {"id": "x" * 65, "pubnonces": []}, "too long"),
        (SignReject, {"id": "r", "reason": "x" * 1001}, "too long"),
        (SignSession, {"id": "r", "sid": 0, "signers": [0, True], "pubnonces": [[], []]}, "whole numbers"),
        (SignSession, {"id": "r", "sid": 0, "signers": [0, 1], "pubnonces": [[]]}, "2 signers but 1"),
        (SignSession, {"id": "r", "sid": 0, "signers": [0], "pubnonces": ["ab"]}, "list of pubnonces"),
        (SignSession, {"id": "r", "sid": 2**40, "signers": [], "pubnonces": []}, "out of range"),
        (SignShare, {"id": "r", "sid": 1, "psigs": ["zz"], "next": []}, "not hex"),
        (SignShare, {"id": "r", "sid": 1, "psigs": [], "next": ["02"]}, "must be 66 bytes"),
        (SignDone, {"id": "r", "status": "signed"}, "missing field 'txid'"),
        (DkgHello, {"epoch": 0, "attempt": 0}, "out of range"),
        (EpochRecovery, {"epoch": -1, "recovery": ""}, "out of range"),
        (Heartbeat, {"t": 1, "epoch": 1, "txid": "ab"}, "must be 32 bytes"),
        (Heartbeat, {"t": 1, "epoch": True}, "wrong type"),
        (Address, {"epoch": 0, "index": 2**31}, "out of range"),
    ],
)
def test_a_bad_field_is_named(cls: type[Typed], body: dict[str, Any], problem: str) -> None:
    with pytest.raises(MessageError, match=problem):
        cls.decode(Message(cls.KIND, body))


@FUZZ
@given(st.sampled_from(SAMPLES), st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_an_arbitrary_body_is_a_message_error_or_a_message(sample: Typed, body: dict[str, Any]) -> None:
    with contextlib.suppress(MessageError):  # anything else (a TypeError, a KeyError) fails the test
        type(sample).decode(Message(sample.KIND, body))


@FUZZ
@given(st.sampled_from(SAMPLES), st.data())
def test_one_changed_field_is_a_message_error_or_reads_back(sample: Typed, data: st.DataObject) -> None:
    body = sample.body()
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(json_values)
    try:
        again = type(sample).decode(Message(sample.KIND, body))
    except MessageError:
        return
    assert again.body() == body or type(sample).decode(Message(sample.KIND, again.body())) == again

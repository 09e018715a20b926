"""The typed messages: each kind reads back what it wrote, and anything else is a MessageError.

Every kind is fuzzed with arbitrary bodies and with single-field mutations of a valid one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frostfed.federation.messages import (
    Address,
    BondRequest,
    BondSign,
    BondSigned,
    ChangeAbort,
    ChangeAck,
    ChangeDone,
    ChangeKey,
    DkgHello,
    EpochRecovery,
    Heartbeat,
    Kind,
    Message,
    MessageError,
    Prevout,
    SignDone,
    SignReady,
    SignReject,
    SignSession,
    SignShare,
    Typed,
    decode,
)

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
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
    ChangeAck(1, True),
    ChangeAck(1, False, "admission: not approved"),
    ChangeKey(2, b"\x05recovery"),
    ChangeDone(1, "ef" * 32),
    ChangeAbort(1, "n" * 32, "never mind"),
    BondRequest(1),
    BondSign(1, b"\x02\x00tx", (Prevout("aa" * 32, 1, b"\x51\x20" + b"\x01" * 32, 50_000),)),
    BondSigned(1, b"", (b"\x30" * 71, b"\x02" * 33)),
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
    assert {type(m).KIND for m in SAMPLES} == set(Kind) - {Kind.SIGN_REQUEST, Kind.CHANGE_PROPOSAL, Kind.BOND_OFFER}
    assert {type(m).KIND for m in SAMPLES} >= {
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
        (ChangeAck, {"epoch": 1, "ok": 1, "reason": ""}, "wrong type"),
        (ChangeDone, {"epoch": 1, "txid": "ab" * 31}, "must be 32 bytes"),
        (ChangeAbort, {"epoch": 1, "nonce": "x" * 33, "reason": ""}, "too long"),
        (BondSign, {"epoch": 1, "tx": "00", "prevouts": ["x"]}, "wrong type"),
        (BondSign, {"epoch": 1, "tx": "00", "prevouts": [{"txid": "ab" * 32, "vout": -1}]}, "out of range"),
        (BondSigned, {"epoch": 1, "script_sig": "", "witness": ["00"] * 21}, "too many items"),
    ],
)
def test_a_bad_field_is_named(cls: type[Typed], body: dict[str, Any], problem: str) -> None:
    with pytest.raises(MessageError, match=problem):
        cls.decode(Message(cls.KIND, body))


@FUZZ
@given(st.sampled_from(SAMPLES), st.data())
def test_changed_fields_are_a_message_error_or_read_back(sample: Typed, data: st.DataObject) -> None:
    body = sample.body()
    for key in data.draw(st.lists(st.sampled_from(sorted(body)), min_size=1, max_size=len(body))):
        body[key] = data.draw(json_values)
    try:  # anything but a MessageError (a TypeError, a KeyError) fails the test
        again = type(sample).decode(Message(sample.KIND, body))
    except MessageError:
        return
    assert again.body() == body or type(sample).decode(Message(sample.KIND, again.body())) == again

"""Federation messages from the network: anything malformed is a MessageError, and nothing else escapes.

The decoders are fuzzed with arbitrary bytes, arbitrary JSON and single mutations of valid messages."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from bitcoin.core import CMutableTransaction, COutPoint, CTransaction, CTxIn, CTxOut
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from frostfed.federation import messages
from frostfed.federation.messages import Message, MessageError, decode, encode
from frostfed.federation.signing_request import SigningRequest

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_tx(n_in: int = 2, n_out: int = 2) -> CTransaction:
    vin = [CTxIn(COutPoint(os.urandom(32), i)) for i in range(n_in)]
    vout = [CTxOut(10_000 + i, bytes([0x51, 0x20]) + os.urandom(32)) for i in range(n_out)]
    return CTransaction.from_tx(CMutableTransaction(vin, vout, nVersion=2))


def request_body() -> dict[str, Any]:
    return SigningRequest("a1b2c3d4e5f60718", 0, "payout", make_tx(), ((0, 3), (1, 0)), {1: (1, 1)}).to_body()


VALID = encode("sign_request", request_body())

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5),
    max_leaves=30,
)


def decode_only_message_errors(data: bytes) -> Message | None:
    try:
        return decode(data)
    except MessageError:
        return None


def request_only_message_errors(msg: Message) -> SigningRequest | None:
    try:
        return SigningRequest.from_message(msg)
    except MessageError:
        return None


# encode/decode


def test_valid_request_round_trips() -> None:
    msg = decode(VALID)
    assert msg.kind == "sign_request"
    req = SigningRequest.from_message(msg)
    assert req.to_body() == msg.body
    assert encode("sign_request", req.to_body()) == VALID
    assert req.input_paths == ((0, 3), (1, 0)) and req.change_paths == {1: (1, 1)}


def test_a_psbt_request_carries_its_psbt_and_no_other_kind_does() -> None:
    tx = make_tx()
    req = SigningRequest("p1", 0, "psbt", tx, ((0, 3), (1, 0)), {}, psbt=b"psbt\xff" + tx.serialize())
    again = SigningRequest.from_message(decode(encode("sign_request", req.to_body())))
    assert again.psbt == req.psbt and again.kind == "psbt"
    body = request_body()
    body["psbt"] = "00"
    with pytest.raises(MessageError, match="carries no PSBT"):
        SigningRequest.from_message(Message("sign_request", body))
    body = req.to_body()
    body["psbt"] = "zz"
    with pytest.raises(MessageError):
        SigningRequest.from_message(Message("sign_request", body))


def test_encoding_is_canonical() -> None:
    assert encode("x", {"b": 1, "a": [1, 2]}) == b'{"body":{"a":[1,2],"b":1},"type":"x","v":1}'


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'"text"',
        b'{"v":1,"type":"x"}',
        b'{"v":1,"type":"x","body":{},"extra":1}',
        b'{"v":2,"type":"x","body":{}}',
        b'{"v":true,"type":"x","body":{}}',
        b'{"v":1.0,"type":"x","body":{}}',
        b'{"v":"1","type":"x","body":{}}',
        b'{"v":1,"type":5,"body":{}}',
        b'{"v":1,"type":"","body":{}}',
        b'{"v":1,"type":"x\\n","body":{}}',
        b'{"v":1,"type":"x","body":[]}',
        b"[" * 100_000,
        b'{"v":1,"type":"x","body":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,
        b'{"v":1,"type":"x","body":{"n":' + b"9" * 5000 + b"}}",
        b'{"v":1,"type":"x","body":{"n":NaN}}',
        b'{"v":1,"type":"x","body":{"n":-Infinity}}',
    ],
)
def test_malformed_envelopes(data: bytes) -> None:
    with pytest.raises(MessageError):
        decode(data)


def test_a_long_type_or_version_is_not_echoed_into_the_error() -> None:
    for data in (encode("t" * 10_000, {}), b'{"v":"' + b"x" * 10_000 + b'","type":"x","body":{}}'):
        with pytest.raises(MessageError) as e:
            decode(data)
        assert len(str(e.value)) < 200


def test_oversized_message_is_refused_before_parsing() -> None:
    with pytest.raises(MessageError, match="too large"):
        decode(b" " * (messages.MAX_MESSAGE + 1))


@FUZZ
@given(st.binary(max_size=300))
@example(b'{"v":1,"type":"x","body":{}}')
def test_arbitrary_bytes_only_raise_message_error(data: bytes) -> None:
    msg = decode_only_message_errors(data)
    if msg is not None:
        assert isinstance(msg.kind, str) and isinstance(msg.body, dict)


@FUZZ
@given(json_values)
def test_arbitrary_json_only_raises_message_error(value: Any) -> None:
    decode_only_message_errors(json.dumps(value).encode())
    msg = decode_only_message_errors(json.dumps({"v": 1, "type": "sign_request", "body": value}).encode())
    text = json.dumps(value)
    if isinstance(value, dict) and not any(c in text for c in ("NaN", "Infinity")):
        assert msg is not None and json.dumps(msg.body) == text
        request_only_message_errors(msg)


# accessors


def accessors(msg: Message, key: str) -> None:
    """Every accessor with a few bounds; each returns what it promises or raises MessageError."""
    checks: list[tuple[Any, Any]] = [
        (lambda: msg.get(key, int), lambda v: type(v) is int),
        (lambda: msg.get(key, (str, list)), lambda v: isinstance(v, str | list)),
        (lambda: msg.text(key), lambda v: isinstance(v, str) and len(v) <= 256),
        (lambda: msg.text(key, 3), lambda v: isinstance(v, str) and len(v) <= 3),
        (lambda: msg.integer(key), lambda v: type(v) is int and 0 <= v <= 2**63),
        (lambda: msg.integer(key, -5, 5), lambda v: type(v) is int and -5 <= v <= 5),
        (lambda: msg.hexbytes(key), lambda v: isinstance(v, bytes)),
        (lambda: msg.hexbytes(key, 32), lambda v: isinstance(v, bytes) and len(v) == 32),
        (lambda: msg.hexbytes(key, max_len=2), lambda v: isinstance(v, bytes) and len(v) <= 2),
        (lambda: msg.hexlist(key), lambda v: all(isinstance(x, bytes) for x in v)),
        (lambda: msg.hexlist(key, 33, max_items=2), lambda v: len(v) <= 2 and all(len(x) == 33 for x in v)),
    ]
    for call, ok in checks:
        try:
            value = call()
        except MessageError:
            continue
        assert ok(value), value


@FUZZ
@given(st.dictionaries(st.sampled_from(["a", "b"]), json_values, max_size=2), st.sampled_from(["a", "b", "c"]))
def test_accessors_on_arbitrary_values_only_raise_message_error(body: dict[str, Any], key: str) -> None:
    accessors(Message("k", body), key)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("00ff", b"\x00\xff"),
        ("ABcd", b"\xab\xcd"),
        ("", b""),
    ],
)
def test_hex_fields(value: str, expected: bytes) -> None:
    assert Message("k", {"h": value}).hexbytes("h") == expected


@pytest.mark.parametrize("value", ["0", "0g", "00 ff", " 00", "00\n", "０1", "\u00e9\u00e9", 12, None, True, ["00"]])
def test_non_canonical_or_non_hex_fields(value: Any) -> None:
    with pytest.raises(MessageError):
        Message("k", {"h": value}).hexbytes("h")
    with pytest.raises(MessageError):
        Message("k", {"h": [value]}).hexlist("h")


def test_bools_are_not_integers_and_bounds_hold() -> None:
    m = Message("k", {"t": True, "i": 7, "f": 7.0, "big": 2**70})
    for key in ("t", "f", "big"):
        with pytest.raises(MessageError):
            m.integer(key)
    assert m.integer("i", 7, 7) == 7
    with pytest.raises(MessageError):
        m.integer("i", 8)
    assert m.get("t", bool) is True


def test_text_with_a_lone_surrogate_is_refused() -> None:
    msg = decode(b'{"v":1,"type":"sign_reject","body":{"id":"\\ud800","reason":"ok\\nsecond line"}}')
    with pytest.raises(MessageError, match="not valid Unicode"):
        msg.text("id")
    assert msg.text("reason") == "ok\nsecond line"  # multi-line reasons (a check command's stderr) pass


def test_length_limits() -> None:
    m = Message("k", {"s": "abcd", "h": "00" * 5, "l": ["00"] * 3})
    with pytest.raises(MessageError, match="too long"):
        m.text("s", 3)
    assert m.text("s", 4) == "abcd"
    with pytest.raises(MessageError, match="must be 4 bytes"):
        m.hexbytes("h", 4)
    with pytest.raises(MessageError, match="too long"):
        m.hexbytes("h", max_len=4)
    with pytest.raises(MessageError, match="too many"):
        m.hexlist("l", max_items=2)
    assert m.hexlist("l", 1, max_items=3) == [b"\x00"] * 3


# signing requests


def with_field(key: str, value: Any) -> Message:
    body = request_body()
    body[key] = value
    return Message("sign_request", body)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", ""),
        ("id", "a" * 65),
        ("id", "line\nbreak"),
        ("id", "sp ace"),
        ("id", "é"),
        ("id", 5),
        ("kind", "steal"),
        ("kind", None),
        ("epoch", -1),
        ("epoch", "0"),
        ("epoch", True),
        ("tx", ""),
        ("tx", "00"),
        ("tx", "zz"),
        ("tx", make_tx().serialize().hex() + "00"),  # trailing bytes
        ("tx", make_tx().serialize().hex()[:-2]),  # truncated
        ("tx", "00" * 400_001),
        ("input_paths", [[0, 3]]),  # one path for two inputs
        ("input_paths", [[0, 3], [1, 0], [0, 1]]),
        ("input_paths", [[2, 0], [0, 0]]),
        ("input_paths", [[0, -1], [0, 0]]),
        ("input_paths", [[0, 2**31], [0, 0]]),
        ("input_paths", [[True, 0], [0, 0]]),
        ("input_paths", [[0.0, 0], [0, 0]]),
        ("input_paths", [[0, 1.0], [0, 0]]),
        ("input_paths", [{"a": 1, "b": 2}, [0, 0]]),
        ("input_paths", ["01", [0, 0]]),
        ("input_paths", [None, [0, 0]]),
        ("input_paths", [[0, 0, 0], [0, 0]]),
        ("input_paths", {"0": [0, 0]}),
        ("change_paths", {"2": [1, 0]}),  # no such output
        ("change_paths", {"-1": [1, 0]}),
        ("change_paths", {"01": [1, 0]}),
        ("change_paths", {" 1": [1, 0]}),
        ("change_paths", {"1_0": [1, 0]}),
        ("change_paths", {"１": [1, 0]}),
        ("change_paths", {"9" * 5000: [1, 0]}),
        ("change_paths", {"x": [1, 0]}),
        ("change_paths", {"1": "1/0"}),
        ("change_paths", [[1, 0]]),
    ],
)
def test_malformed_signing_requests(key: str, value: Any) -> None:
    with pytest.raises(MessageError):
        SigningRequest.from_message(with_field(key, value))


@pytest.mark.parametrize("key", ["id", "epoch", "kind", "tx", "input_paths", "change_paths"])
def test_missing_request_field(key: str) -> None:
    body = request_body()
    del body[key]
    with pytest.raises(MessageError, match=key):
        SigningRequest.from_message(Message("sign_request", body))


def mutate(data: bytes, pos: int, op: int, byte: int) -> bytes:
    pos %= len(data) + 1
    if op == 0:
        return data[:pos] + bytes([byte]) + data[pos + 1 :]
    if op == 1:
        return data[:pos] + bytes([byte]) + data[pos:]
    if op == 2:
        return data[:pos] + data[pos + 1 :]
    return data[:pos]


@FUZZ
@given(st.integers(0, len(VALID)), st.integers(0, 3), st.integers(0, 255))
def test_mutated_valid_requests_only_raise_message_error(pos: int, op: int, byte: int) -> None:
    data = mutate(VALID, pos, op, byte)
    msg = decode_only_message_errors(data)
    if msg is not None:
        accessors(msg, "id")
        accessors(msg, "input_paths")
        req = request_only_message_errors(msg)
        if req is not None:  # whatever is accepted is well-formed
            assert len(req.input_paths) == len(req.tx.vin)
            assert all(0 <= i < len(req.tx.vout) for i in req.change_paths)


@FUZZ
@given(st.sampled_from(sorted(request_body())), json_values)
def test_any_json_in_any_request_field_only_raises_message_error(key: str, value: Any) -> None:
    data = json.dumps({"v": 1, "type": "sign_request", "body": {**request_body(), key: value}}).encode()
    msg = decode_only_message_errors(data)
    if msg is None:  # only NaN and infinities are not JSON
        assert b"NaN" in data or b"Infinity" in data
    else:
        request_only_message_errors(msg)


@FUZZ
@given(
    st.lists(
        st.lists(st.integers(-3, 2**32) | st.booleans() | st.floats() | st.text(max_size=2), max_size=3), max_size=3
    ),
    st.dictionaries(st.text(max_size=4), st.lists(st.integers(-1, 3), max_size=3), max_size=3),
)
def test_any_paths_only_raise_message_error(inputs: list[Any], changes: dict[str, Any]) -> None:
    msg = Message("sign_request", {**request_body(), "input_paths": inputs, "change_paths": changes})
    req = request_only_message_errors(msg)
    if req is not None:
        for path in (*req.input_paths, *req.change_paths.values()):
            assert path[0] in (0, 1) and type(path[0]) is int and type(path[1]) is int

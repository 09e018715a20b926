"""The compact nonce encoding of the signing messages: what round-trips, what is refused, and how much
smaller a session request becomes."""

from __future__ import annotations

import os

import pytest
from dealer import trusted_dealer

from frostfed.federation.messages import NONCE_BYTES, Message, MessageError, decode_nonces, encode, encode_nonces
from frostfed.frost.roast import RoastSigner, SessionRequest, SigningTask, ThresholdKey


def test_nonces_round_trip_as_one_hex_string() -> None:
    nonces = [os.urandom(NONCE_BYTES) for _ in range(3)]
    text = encode_nonces(nonces)
    assert isinstance(text, str) and len(text) == 2 * NONCE_BYTES * 3
    assert decode_nonces(Message("sign_session", {"aggnonces": text}), "aggnonces", 3) == tuple(nonces)


@pytest.mark.parametrize(
    "value",
    [
        "ab" * NONCE_BYTES * 2,  # two nonces where one is expected
        "ab" * (NONCE_BYTES - 1),
        "zz" * NONCE_BYTES,
        " " + "ab" * NONCE_BYTES,
        ["ab" * NONCE_BYTES],  # the list form
        NONCE_BYTES,
    ],
)
def test_a_malformed_nonce_field_is_a_message_error(value: object) -> None:
    with pytest.raises(MessageError, match="aggnonces"):
        decode_nonces(Message("sign_session", {"aggnonces": value}), "aggnonces", 1)


def test_a_missing_field_or_no_task_is_a_message_error_and_a_short_nonce_is_not_encoded() -> None:
    with pytest.raises(MessageError):
        decode_nonces(Message("sign_session", {}), "aggnonces", 1)
    with pytest.raises(MessageError):
        decode_nonces(Message("sign_session", {"aggnonces": ""}), "aggnonces", 0)
    with pytest.raises(ValueError):
        encode_nonces([os.urandom(65)])


def test_a_67_of_100_session_request_shrinks_from_every_pubnonce_to_one_aggregate() -> None:
    t, n = 67, 100
    keys = trusted_dealer(t, n, seed=3)
    key = ThresholdKey(n, t, keys.thresh_pk, tuple(keys.pubshares))
    tasks = [SigningTask(os.urandom(32))]
    pres = [RoastSigner(key, i, keys.secshares[i], tasks).presign() for i in range(t)]
    request = SessionRequest(0, tuple(range(t)), tuple(p.pubnonces for p in pres))
    base = {"id": "ab" * 32, "sid": 0, "signers": list(range(t))}
    listed = encode("sign_session", {**base, "pubnonces": [[x.hex() for x in ps] for ps in request.pubnonces]})
    compact = encode("sign_session", {**base, "aggnonces": encode_nonces(request.signer_session().aggnonces)})
    assert len(listed) > 9_000 and len(compact) < 600
    assert len(compact) * 10 < len(listed)

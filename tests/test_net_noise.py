"""BOLT 8 handshake and message encryption against the test vectors of bolt/08-transport.md."""

from __future__ import annotations

import pytest

from frostfed.net.noise import BOLT8_PROLOGUE, Handshake, HandshakeError, TransportError

# Values copied from the "Appendix A: Transport Test Vectors" section of BOLT 8.
INIT_LS_PRIV = bytes.fromhex("11" * 32)
INIT_E_PRIV = bytes.fromhex("12" * 32)
INIT_LS_PUB = bytes.fromhex("034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa")
RESP_LS_PRIV = bytes.fromhex("21" * 32)
RESP_E_PRIV = bytes.fromhex("22" * 32)
RESP_LS_PUB = bytes.fromhex("028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7")

ACT_ONE = bytes.fromhex(
    "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a"
)
ACT_TWO = bytes.fromhex(
    "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae"
)
ACT_THREE = bytes.fromhex(
    "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c3822"
    "8dc68b1c466263b47fdf31e560e139ba"
)
OUTPUTS = {
    0: "cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95",
    1: "72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1",
    500: "178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8",
    501: "1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd",
    1000: "4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09",
    1001: "2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36",
}


def initiator() -> Handshake:
    return Handshake(INIT_LS_PRIV, RESP_LS_PUB, prologue=BOLT8_PROLOGUE, ephemeral_private=INIT_E_PRIV)


def responder() -> Handshake:
    return Handshake(RESP_LS_PRIV, None, prologue=BOLT8_PROLOGUE, ephemeral_private=RESP_E_PRIV)


def test_initiator_produces_the_vector_acts():
    hs = initiator()
    assert hs.act_one() == ACT_ONE
    act_three, transport = hs.read_act_two(ACT_TWO)
    assert act_three == ACT_THREE
    assert transport.remote_static == RESP_LS_PUB


def test_responder_produces_act_two_and_learns_the_initiator_key():
    hs = responder()
    assert hs.read_act_one(ACT_ONE) == ACT_TWO
    transport = hs.read_act_three(ACT_THREE)
    assert transport.remote_static == INIT_LS_PUB


def test_message_encryption_with_two_key_rotations():
    hs = initiator()
    hs.act_one()
    _, sender = hs.read_act_two(ACT_TWO)
    r = responder()
    r.read_act_one(ACT_ONE)
    receiver = r.read_act_three(ACT_THREE)
    for i in range(1002):
        frame = sender.encrypt_message(b"hello")
        if i in OUTPUTS:
            assert frame.hex() == OUTPUTS[i], i
        assert receiver.feed(frame) == [b"hello"]


def _replace(act: bytes, pos: int, value: int) -> bytes:
    return act[:pos] + bytes((value,)) + act[pos + 1 :]


@pytest.mark.parametrize(
    ("act", "reason"),
    [
        (ACT_ONE[:-1], "act one: 49 bytes"),  # ACT1_READ_FAILED
        (_replace(ACT_ONE, 0, 1), "unknown version 1"),  # ACT1_BAD_VERSION
        (_replace(ACT_ONE, 1, 4), "invalid public key"),  # ACT1_BAD_PUBKEY
        (ACT_ONE[:-1] + b"\x6b", "authentication failed"),  # ACT1_BAD_TAG
    ],
)
def test_responder_rejects_bad_act_one(act, reason):
    with pytest.raises(HandshakeError, match=reason):
        responder().read_act_one(act)


@pytest.mark.parametrize(
    ("act", "reason"),
    [
        (_replace(ACT_THREE, 0, 1), "unknown version 1"),  # ACT3_BAD_VERSION
        (ACT_THREE[:-1], "act three: 65 bytes"),  # ACT3_READ_FAILED
        (_replace(ACT_THREE, 1, 0xC9), "authentication failed"),  # ACT3_BAD_CIPHERTEXT
        (
            bytes.fromhex(
                "00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09a8ee351870c2bb7f78b754"
                "a26c6cef79a98d25139c856d7efd252c2ae73c"
            ),
            "authentication failed|invalid public key",  # ACT3_BAD_PUBKEY
        ),
        (ACT_THREE[:-1] + b"\xbb", "authentication failed"),  # ACT3_BAD_TAG
    ],
)
def test_responder_rejects_bad_act_three(act, reason):
    hs = responder()
    hs.read_act_one(ACT_ONE)
    with pytest.raises(HandshakeError, match=reason):
        hs.read_act_three(act)


@pytest.mark.parametrize(
    ("act", "reason"),
    [
        (ACT_TWO[:-1], "act two: 49 bytes"),  # ACT2_READ_FAILED
        (_replace(ACT_TWO, 0, 1), "unknown version 1"),  # ACT2_BAD_VERSION
        (_replace(ACT_TWO, 1, 4), "invalid public key"),  # ACT2_BAD_PUBKEY
        (ACT_TWO[:-1] + b"\xaf", "authentication failed"),  # ACT2_BAD_TAG
    ],
)
def test_initiator_rejects_bad_act_two(act, reason):
    hs = initiator()
    hs.act_one()
    with pytest.raises(HandshakeError, match=reason):
        hs.read_act_two(act)


def test_wrong_responder_key_fails_the_handshake():
    hs = Handshake(INIT_LS_PRIV, INIT_LS_PUB, prologue=BOLT8_PROLOGUE)
    r = responder()
    with pytest.raises(HandshakeError, match="authentication failed"):
        r.read_act_one(hs.act_one())


def test_tampered_transport_frame_is_refused():
    hs = initiator()
    hs.act_one()
    _, sender = hs.read_act_two(ACT_TWO)
    r = responder()
    r.read_act_one(ACT_ONE)
    receiver = r.read_act_three(ACT_THREE)
    frame = bytearray(sender.encrypt_message(b"payload"))
    frame[-1] ^= 1
    with pytest.raises(TransportError):
        receiver.feed(bytes(frame))


def test_stream_split_at_every_byte_reassembles():
    hs = initiator()
    hs.act_one()
    _, sender = hs.read_act_two(ACT_TWO)
    r = responder()
    r.read_act_one(ACT_ONE)
    receiver = r.read_act_three(ACT_THREE)
    stream = b"".join(sender.encrypt_message(bytes([i]) * (i * 7)) for i in range(20))
    got = []
    for b in stream:
        got += receiver.feed(bytes([b]))
    assert got == [bytes([i]) * (i * 7) for i in range(20)]

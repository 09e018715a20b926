"""EncPedPop: SimplPedPop with secret shares encrypted by pairwise ECDH (reference `encpedpop.py`).

Each participant encrypts the share for participant i under a pad derived from ECDH between a fresh
nonce and i's host key ("Hashed ElGamal" multi-recipient KEM, with the recipient index in the hash).
The encryption is additive modulo the group order, so the coordinator can sum the ciphertexts for
each recipient without learning anything, and the recipient subtracts the sum of the n pads.
"""

from __future__ import annotations

from typing import NamedTuple, NoReturn

from coincurve import PrivateKey

from . import simplpedpop
from .dkg_errors import (
    FaultyCoordinatorError,
    FaultyParticipantOrCoordinatorError,
    MsgParseError,
    UnknownFaultyParticipantOrCoordinatorError,
)
from .secp import N, int_from_bytes
from .vss import scalar_bytes, scalar_checked, tagged_hash_bip_dkg


def _ecdh_raw(seckey: PrivateKey, pubkey: bytes) -> bytes:
    """SHA256 of the compressed shared point, as libsecp256k1 computes it; ValueError if not a point."""
    if len(pubkey) != 33 or pubkey[0] not in (2, 3):
        raise ValueError("not a compressed point")
    try:
        return seckey.ecdh(pubkey)
    except Exception as e:  # coincurve raises ValueError or its own error types
        raise ValueError("not a point on the curve") from e


def ecdh(seckey: PrivateKey, my_pubkey: bytes, their_pubkey: bytes, context: bytes, sending: bool) -> int:
    data = _ecdh_raw(seckey, their_pubkey)
    data += my_pubkey + their_pubkey if sending else their_pubkey + my_pubkey
    return int_from_bytes(tagged_hash_bip_dkg("encpedpop ecdh", data + context)) % N


def self_pad(symkey: bytes, nonce: bytes, context: bytes) -> int:
    """Pad for the share to ourselves: symmetric, saving one ECDH."""
    return int_from_bytes(tagged_hash_bip_dkg("encaps_multi self_pad", symkey + nonce + context)) % N


def encaps_multi(
    secnonce: bytes, pubnonce: bytes, deckey: bytes, enckeys: list[bytes], context: bytes, participant_id: int
) -> list[int]:
    nonce_key = PrivateKey(secnonce)
    pads = []
    for i, enckey in enumerate(enckeys):
        context_ = i.to_bytes(4, "big") + context
        if i == participant_id:
            pads.append(self_pad(deckey, pubnonce, context_))
        else:
            pads.append(ecdh(nonce_key, pubnonce, enckey, context_, sending=True))
    return pads


def decaps_multi(
    deckey: bytes, enckey: bytes, pubnonces: list[bytes], context: bytes, participant_id: int
) -> list[int]:
    context_ = participant_id.to_bytes(4, "big") + context
    key = PrivateKey(deckey)
    pads = []
    for sender_id, pubnonce in enumerate(pubnonces):
        if sender_id == participant_id:
            pads.append(self_pad(deckey, pubnonce, context_))
            continue
        try:
            pads.append(ecdh(key, enckey, pubnonce, context_, sending=False))
        except ValueError as e:
            raise FaultyParticipantOrCoordinatorError(sender_id, "invalid public nonce") from e
    return pads


def decrypt_sum(
    deckey: bytes,
    enckey: bytes,
    pubnonces: list[bytes],
    context: bytes,
    participant_id: int,
    sum_ciphertexts: int,
) -> int:
    if not 0 <= participant_id < len(pubnonces):
        raise ValueError("participant id out of range")
    pads = decaps_multi(deckey, enckey, pubnonces, context, participant_id)
    return (sum_ciphertexts - sum(pads)) % N


def serialize_enc_context(t: int, enckeys: list[bytes]) -> bytes:
    return t.to_bytes(4, "big") + b"".join(enckeys)


def parse_scalars(b: bytes, count: int, what: str) -> list[int]:
    try:
        return [scalar_checked(b[i : i + 32]) for i in range(0, 32 * count, 32)]
    except ValueError as e:
        raise MsgParseError(f"invalid {what}") from e


class ParticipantMsg(NamedTuple):
    simpl_pmsg: simplpedpop.ParticipantMsg
    pubnonce: bytes
    enc_shares: list[int]

    @staticmethod
    def len_bytes(t: int, n: int) -> int:
        return simplpedpop.ParticipantMsg.len_bytes(t) + 33 + 32 * n

    @staticmethod
    def from_bytes(b: bytes, t: int, n: int) -> ParticipantMsg:
        if len(b) != ParticipantMsg.len_bytes(t, n):
            raise ValueError("EncPedPop participant message has the wrong length")
        simpl_len = simplpedpop.ParticipantMsg.len_bytes(t)
        simpl_pmsg = simplpedpop.ParticipantMsg.from_bytes(b[:simpl_len], t)
        rest = b[simpl_len:]
        return ParticipantMsg(simpl_pmsg, rest[:33], parse_scalars(rest[33:], n, "encrypted secret share"))

    def to_bytes(self) -> bytes:
        return self.simpl_pmsg.to_bytes() + self.pubnonce + b"".join(scalar_bytes(s) for s in self.enc_shares)


class CoordinatorMsg(NamedTuple):
    simpl_cmsg: simplpedpop.CoordinatorMsg
    pubnonces: list[bytes]

    @staticmethod
    def len_bytes(t: int, n: int) -> int:
        return simplpedpop.CoordinatorMsg.len_bytes(t, n) + 33 * n

    @staticmethod
    def from_bytes(b: bytes, t: int, n: int) -> CoordinatorMsg:
        if len(b) != CoordinatorMsg.len_bytes(t, n):
            raise ValueError("EncPedPop coordinator message has the wrong length")
        simpl_len = simplpedpop.CoordinatorMsg.len_bytes(t, n)
        simpl_cmsg = simplpedpop.CoordinatorMsg.from_bytes(b[:simpl_len], t, n)
        rest = b[simpl_len:]
        return CoordinatorMsg(simpl_cmsg, [rest[i : i + 33] for i in range(0, 33 * n, 33)])

    def to_bytes(self) -> bytes:
        return self.simpl_cmsg.to_bytes() + b"".join(self.pubnonces)


class CoordinatorInvestigationMsg(NamedTuple):
    enc_partial_secshares: list[int]
    partial_pubshares: list[simplpedpop.Point]

    @staticmethod
    def len_bytes(n: int) -> int:
        return simplpedpop.CoordinatorInvestigationMsg.len_bytes(n) + 32 * n

    @staticmethod
    def from_bytes(b: bytes, n: int) -> CoordinatorInvestigationMsg:
        if len(b) != CoordinatorInvestigationMsg.len_bytes(n):
            raise ValueError("investigation message has the wrong length")
        enc = parse_scalars(b[: 32 * n], n, "encrypted partial secshare")
        simpl = simplpedpop.CoordinatorInvestigationMsg.from_bytes(b[32 * n :], n)
        return CoordinatorInvestigationMsg(enc, simpl.partial_pubshares)

    def to_bytes(self) -> bytes:
        return b"".join(scalar_bytes(s) for s in self.enc_partial_secshares) + (
            simplpedpop.CoordinatorInvestigationMsg(self.partial_pubshares).to_bytes()
        )


class ParticipantState(NamedTuple):
    simpl_state: simplpedpop.ParticipantState
    pubnonce: bytes
    enckeys: list[bytes]
    participant_id: int


class ParticipantInvestigationData(NamedTuple):
    simpl_inv_data: simplpedpop.ParticipantInvestigationData
    enc_secshare: int
    pads: list[int]

    def __repr__(self) -> str:  # the pads decrypt the shares
        return f"ParticipantInvestigationData({self.simpl_inv_data!r}, <pads hidden>)"


def participant_step1(
    seed: bytes, deckey: bytes, enckeys: list[bytes], t: int, participant_id: int, random: bytes
) -> tuple[ParticipantState, ParticipantMsg]:
    if t >= 2**32:
        raise ValueError("threshold out of range")
    if len(random) != 32:
        raise ValueError("randomness must be 32 bytes")
    n = len(enckeys)
    # Everything the shares depend on also goes into the encryption nonce, so different shares are
    # never encrypted under the same pads.
    enc_context = serialize_enc_context(t, enckeys)
    simpl_seed = tagged_hash_bip_dkg("encpedpop seed", seed + random + enc_context)
    simpl_aux_rand = tagged_hash_bip_dkg("simplpedpop aux", simpl_seed)
    secnonce = tagged_hash_bip_dkg("encpedpop secnonce", simpl_seed)
    pubnonce = PrivateKey(secnonce).public_key.format()
    simpl_state, simpl_pmsg, shares = simplpedpop.participant_step1(simpl_seed, t, n, participant_id, simpl_aux_rand)
    pads = encaps_multi(secnonce, pubnonce, deckey, enckeys, enc_context, participant_id)
    enc_shares = [(share + pad) % N for share, pad in zip(shares, pads, strict=True)]
    state = ParticipantState(simpl_state, pubnonce, enckeys, participant_id)
    return state, ParticipantMsg(simpl_pmsg, pubnonce, enc_shares)


def participant_step2(
    state: ParticipantState, deckey: bytes, cmsg: CoordinatorMsg, enc_secshare: int
) -> tuple[simplpedpop.DKGOutput, bytes]:
    simpl_state, pubnonce, enckeys, participant_id = state
    simpl_cmsg, pubnonces = cmsg
    if pubnonces[participant_id] != pubnonce:
        raise FaultyCoordinatorError("Coordinator replied with wrong pubnonce")
    enc_context = serialize_enc_context(simpl_state.t, enckeys)
    pads = decaps_multi(deckey, enckeys[participant_id], pubnonces, enc_context, participant_id)
    secshare = (enc_secshare - sum(pads)) % N
    try:
        dkg_output, eq_input = simplpedpop.participant_step2(simpl_state, simpl_cmsg, secshare)
    except UnknownFaultyParticipantOrCoordinatorError as e:
        inv_data = ParticipantInvestigationData(e.inv_data, enc_secshare, pads)
        raise UnknownFaultyParticipantOrCoordinatorError(inv_data, *e.args) from e
    eq_input += b"".join(enckeys) + b"".join(pubnonces)
    return dkg_output, eq_input


def participant_investigate(
    error: UnknownFaultyParticipantOrCoordinatorError, cinv: CoordinatorInvestigationMsg
) -> NoReturn:
    simpl_inv_data, _enc_secshare, pads = error.inv_data
    partial_secshares = [(c - pad) % N for c, pad in zip(cinv.enc_partial_secshares, pads, strict=True)]
    try:
        simplpedpop.participant_investigate(
            UnknownFaultyParticipantOrCoordinatorError(simpl_inv_data),
            simplpedpop.CoordinatorInvestigationMsg(cinv.partial_pubshares),
            partial_secshares,
        )
    except simplpedpop.SecshareSumError as e:
        # The encryption is additively homomorphic, so the partial shares can only fail to add up if the
        # coordinator's sum of the encrypted partial shares is wrong.
        raise FaultyCoordinatorError("Sum of encrypted partial secshares not equal to encrypted secshare") from e


def coordinator_step(
    pmsgs: list[ParticipantMsg], t: int, enckeys: list[bytes]
) -> tuple[CoordinatorMsg, simplpedpop.DKGOutput, bytes, list[int]]:
    """The aggregation; also returns each participant's summed encrypted secret share."""
    n = len(enckeys)
    if len(pmsgs) != n:
        raise ValueError("need one message per participant")
    simpl_cmsg, dkg_output, eq_input = simplpedpop.coordinator_step([p.simpl_pmsg for p in pmsgs], t, n)
    pubnonces = [p.pubnonce for p in pmsgs]
    enc_secshares = [sum(p.enc_shares[i] for p in pmsgs) % N for i in range(n)]
    eq_input += b"".join(enckeys) + b"".join(pubnonces)
    return CoordinatorMsg(simpl_cmsg, pubnonces), dkg_output, eq_input, enc_secshares


def coordinator_investigate_for(pmsgs: list[ParticipantMsg], participant_id: int) -> CoordinatorInvestigationMsg:
    simpl_cinv = simplpedpop.coordinator_investigate_for([p.simpl_pmsg for p in pmsgs], participant_id)
    return CoordinatorInvestigationMsg([p.enc_shares[participant_id] for p in pmsgs], simpl_cinv.partial_pubshares)


def coordinator_investigate(pmsgs: list[ParticipantMsg]) -> list[CoordinatorInvestigationMsg]:
    return [coordinator_investigate_for(pmsgs, i) for i in range(len(pmsgs))]

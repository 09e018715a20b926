"""ChillDKG: distributed key generation for FROST (BIP draft by Ruffing, Nick et al., v0.3.0).

EncPedPop plus the CertEq equality check, with host keys as long-term identities. Functions, messages
and exceptions carry the specification's names; messages cross this API as bytes and are parsed with
length checks first, so malformed input raises a specific exception naming the party at fault and no
state object is modified (states are immutable tuples; a failed call returns nothing).

Flow with a coordinator (who may be untrusted):
    participant_step1 -> pmsg1 to coordinator; coordinator_step1(all pmsg1) -> cmsg1 to all;
    participant_step2(cmsg1) -> pmsg2 to coordinator; coordinator_finalize(all pmsg2) -> cmsg2 to all;
    participant_finalize(cmsg2) -> DKG output and recovery data.
On UnknownFaultyParticipantOrCoordinatorError from participant_step2, coordinator_investigate gives each
participant a message for participant_investigate, which names the faulty party.

Without a coordinator the aggregation is a deterministic function of the n first messages, so every
member computes it locally (`aggregate_round1`, `aggregate_round2`); see their docstrings.
"""

from __future__ import annotations

from typing import NamedTuple, NewType, NoReturn

from . import encpedpop
from .certeq import (
    InvalidSignatureInCertificateError,
    certeq_cert_len,
    certeq_coordinator_step,
    certeq_participant_step,
    certeq_verify,
)
from .chilldkg_bip340 import schnorr_sign
from .dkg_errors import (
    DuplicateHostPubkeyError,
    FaultyCoordinatorError,
    FaultyParticipantError,
    FaultyParticipantOrCoordinatorError,
    HostSeckeyError,
    InvalidHostPubkeyError,
    InvalidRecoveryAckError,
    MessageLengthError,
    MsgParseError,
    ProtocolError,
    RandomnessError,
    RecoveryDataError,
    SessionParamsError,
    ThresholdOrCountError,
    UnknownFaultyParticipantOrCoordinatorError,
)
from .secp import N, cbytes, cpoint, int_from_bytes, point_mul_g, schnorr_verify, tagged_hash
from .vss import BIP_TAG, VSSCommitment, scalar_bytes, scalar_checked, tagged_hash_bip_dkg, verify_secshare

__all__ = [
    "CoordinatorState",
    "DKGOutput",
    "DuplicateHostPubkeyError",
    "FaultyCoordinatorError",
    "FaultyParticipantError",
    "FaultyParticipantOrCoordinatorError",
    "HostSeckeyError",
    "InvalidHostPubkeyError",
    "InvalidRecoveryAckError",
    "MessageLengthError",
    "ParticipantState1",
    "ParticipantState2",
    "ProtocolError",
    "RandomnessError",
    "RecoveryData",
    "RecoveryDataError",
    "SessionParams",
    "SessionParamsError",
    "ThresholdOrCountError",
    "UnknownFaultyParticipantOrCoordinatorError",
    "aggregate_round1",
    "aggregate_round2",
    "coordinator_finalize",
    "coordinator_investigate",
    "coordinator_recover",
    "coordinator_step1",
    "hostkey_gen",
    "hostpubkey_gen",
    "investigation_msg_for",
    "params_hash",
    "participant_finalize",
    "participant_investigate",
    "participant_recover",
    "participant_recovery_ack_sign",
    "participant_recovery_acks_verify",
    "participant_step1",
    "participant_step2",
]

###
### Host keys
###

HOSTKEY_TAG = "frostfed/chilldkg host key"


def hostpubkey_gen(hostseckey: bytes) -> bytes:
    """The host public key: the plain compressed public key of `hostseckey` (BIP 327 IndividualPubkey).

    Raises ValueError if `hostseckey` is not 32 bytes, HostSeckeyError if it is 0 or >= the group order.
    """
    if len(hostseckey) != 32:
        raise ValueError("host secret key must be 32 bytes")
    d = int_from_bytes(hostseckey)
    if not 1 <= d < N:
        raise HostSeckeyError("host secret key out of range")
    p = point_mul_g(d)
    assert p is not None
    return cbytes(p)


def hostkey_gen(seed: bytes) -> tuple[bytes, bytes]:
    """(hostseckey, hostpubkey) from a 32-byte secret seed, e.g. a Core Lightning `makesecret` output.

    The host secret key is a tagged hash of the seed, so a seed also used for other purposes never
    serves directly as a signing and ECDH key here. Keeping the seed is enough to recover: pass
    `hostkey_gen(seed)[0]` and the recovery data to `participant_recover`.
    """
    if len(seed) != 32:
        raise ValueError("seed must be 32 bytes")
    hostseckey = tagged_hash(HOSTKEY_TAG, seed)
    return hostseckey, hostpubkey_gen(hostseckey)  # HostSeckeyError with probability ~2^-128


###
### Session parameters and outputs
###


class SessionParams(NamedTuple):
    """Ordered host public keys of all participants and the threshold t (1 <= t <= n < 2**32)."""

    hostpubkeys: list[bytes]
    t: int


def params_validate(params: SessionParams) -> None:
    hostpubkeys, t = params
    if not 1 <= t <= len(hostpubkeys) <= 2**32 - 1:
        raise ThresholdOrCountError("need 1 <= t <= n <= 2**32 - 1")
    for i, hostpubkey in enumerate(hostpubkeys):
        try:
            cpoint(hostpubkey)
        except ValueError as e:
            raise InvalidHostPubkeyError(i, "invalid host public key") from e
    seen: dict[bytes, int] = {}
    for i, hostpubkey in enumerate(hostpubkeys):
        if hostpubkey in seen:
            raise DuplicateHostPubkeyError(seen[hostpubkey], i, "duplicate host public key")
        seen[hostpubkey] = i


def params_hash(params: SessionParams) -> bytes:
    """32-byte hash of the parameters, for out-of-band comparison of the host keys and t."""
    params_validate(params)
    hostpubkeys, t = params
    return tagged_hash_bip_dkg("params_hash", t.to_bytes(4, "big") + b"".join(hostpubkeys))


class DKGOutput(NamedTuple):
    """secshare (32 bytes, None for the coordinator), thresh_pk and pubshares (33 bytes each)."""

    secshare: bytes | None
    thresh_pk: bytes
    pubshares: list[bytes]

    def __repr__(self) -> str:  # the secret share must not reach logs through a repr
        hidden = None if self.secshare is None else "<secret>"
        return f"DKGOutput(secshare={hidden}, thresh_pk={self.thresh_pk.hex()}, n={len(self.pubshares)})"


RecoveryData = NewType("RecoveryData", bytes)

###
### Messages
###


class CoordinatorMsg1(NamedTuple):
    enc_cmsg: encpedpop.CoordinatorMsg
    enc_secshares: list[int]

    @staticmethod
    def len_bytes(t: int, n: int) -> int:
        return encpedpop.CoordinatorMsg.len_bytes(t, n) + 32 * n

    @staticmethod
    def from_bytes(b: bytes, t: int, n: int) -> CoordinatorMsg1:
        if len(b) != CoordinatorMsg1.len_bytes(t, n):
            raise MessageLengthError(None, "coordinator message 1 has the wrong length")
        enc_len = encpedpop.CoordinatorMsg.len_bytes(t, n)
        enc_cmsg = encpedpop.CoordinatorMsg.from_bytes(b[:enc_len], t, n)
        return CoordinatorMsg1(enc_cmsg, encpedpop.parse_scalars(b[enc_len:], n, "encrypted secret shares"))

    def to_bytes(self) -> bytes:
        return self.enc_cmsg.to_bytes() + b"".join(scalar_bytes(s) for s in self.enc_secshares)


def _parse_pmsgs1(pmsgs1: list[bytes], t: int, n: int) -> list[encpedpop.ParticipantMsg]:
    if len(pmsgs1) != n:
        raise MessageLengthError(None, f"need {n} first messages, got {len(pmsgs1)}")
    parsed = []
    for i, pmsg1 in enumerate(pmsgs1):
        if len(pmsg1) != encpedpop.ParticipantMsg.len_bytes(t, n):
            raise MessageLengthError(i, "participant message 1 has the wrong length")
        try:
            parsed.append(encpedpop.ParticipantMsg.from_bytes(pmsg1, t, n))
        except MsgParseError as e:
            raise FaultyParticipantError(i, *e.args) from e
    return parsed


def deserialize_recovery_data(
    b: bytes,
) -> tuple[int, VSSCommitment, list[bytes], list[bytes], list[int], bytes]:
    """t || sum_coms (33t) || hostpubkeys (33n) || pubnonces (33n) || enc_secshares (32n) || cert (64n)."""
    if len(b) < 4:
        raise ValueError("recovery data too short")
    t = int.from_bytes(b[:4], "big")
    rest = b[4:]
    if len(rest) < 33 * t:
        raise ValueError("recovery data too short")
    sum_coms = VSSCommitment.from_bytes(rest[: 33 * t], t)
    rest = rest[33 * t :]
    n, remainder = divmod(len(rest), 33 + 33 + 32 + 64)
    if remainder != 0:
        raise ValueError("recovery data has the wrong length")
    hostpubkeys = [rest[i : i + 33] for i in range(0, 33 * n, 33)]
    rest = rest[33 * n :]
    pubnonces = [rest[i : i + 33] for i in range(0, 33 * n, 33)]
    rest = rest[33 * n :]
    enc_secshares = [scalar_checked(rest[i : i + 32]) for i in range(0, 32 * n, 32)]
    cert = rest[32 * n :]
    return t, sum_coms, hostpubkeys, pubnonces, enc_secshares, cert


###
### Participant
###


class ParticipantState1(NamedTuple):
    params: SessionParams
    participant_id: int
    enc_state: encpedpop.ParticipantState


class ParticipantState2(NamedTuple):
    params: SessionParams
    eq_input: bytes
    dkg_output: DKGOutput


def _participant_id(hostpubkey: bytes, hostpubkeys: list[bytes], msg: str) -> int:
    try:
        return hostpubkeys.index(hostpubkey)
    except ValueError as e:
        raise HostSeckeyError(msg) from e


def participant_step1(hostseckey: bytes, params: SessionParams, random: bytes) -> tuple[ParticipantState1, bytes]:
    """First step: returns the state for `participant_step2` (use once) and pmsg1 (33t + 32n + 97 bytes).

    `random` must be FRESH randomness (32 bytes). Raises HostSeckeyError, the SessionParamsError
    subclasses, RandomnessError (all-zero randomness), ValueError (wrong lengths).
    """
    hostpubkey = hostpubkey_gen(hostseckey)
    params_validate(params)
    hostpubkeys, t = params
    participant_id = _participant_id(hostpubkey, hostpubkeys, "Host secret key does not match any host public key")
    if len(random) != 32:
        raise ValueError("randomness must be 32 bytes")
    if random == bytes(32):
        raise RandomnessError("randomness is all zeroes")
    # EncPedPop only feeds its seed to a hash function, so the high-entropy host key serves as seed.
    enc_state, enc_pmsg = encpedpop.participant_step1(
        seed=hostseckey,
        deckey=hostseckey,
        enckeys=hostpubkeys,
        t=t,
        participant_id=participant_id,
        random=random,
    )
    return ParticipantState1(params, participant_id, enc_state), enc_pmsg.to_bytes()


def participant_step2(
    hostseckey: bytes, state1: ParticipantState1, cmsg1: bytes, aux_rand: bytes
) -> tuple[ParticipantState2, bytes]:
    """Second step: checks the aggregate, decrypts this participant's share, signs the transcript.

    Returns the state for `participant_finalize` and pmsg2 (64 bytes). After sending pmsg2 the host
    secret key must be kept: another participant may finish and later present the recovery data.
    Raises FaultyCoordinatorError, FaultyParticipantOrCoordinatorError (with participant_id),
    UnknownFaultyParticipantOrCoordinatorError (then see `participant_investigate`), HostSeckeyError,
    MessageLengthError.
    """
    hostpubkey = hostpubkey_gen(hostseckey)
    if len(aux_rand) != 32:
        raise ValueError("aux_rand must be 32 bytes")
    params, participant_id, enc_state = state1
    if hostpubkey != params.hostpubkeys[participant_id]:
        raise HostSeckeyError("Host secret key does not match the one used in participant_step1")
    n = len(params.hostpubkeys)
    try:
        enc_cmsg, enc_secshares = CoordinatorMsg1.from_bytes(cmsg1, params.t, n)
    except MsgParseError as e:
        raise FaultyCoordinatorError(*e.args) from e
    enc_dkg_output, eq_input = encpedpop.participant_step2(
        enc_state, hostseckey, enc_cmsg, enc_secshares[participant_id]
    )
    # All encrypted shares enter the transcript, so a valid certificate means valid recovery data.
    eq_input += b"".join(scalar_bytes(s) for s in enc_secshares)
    sig = certeq_participant_step(hostseckey, participant_id, eq_input, aux_rand)
    return ParticipantState2(params, eq_input, DKGOutput._make(enc_dkg_output)), sig


def participant_finalize(state2: ParticipantState2, cmsg2: bytes) -> tuple[DKGOutput, RecoveryData]:
    """Final step: a valid certificate (all n signatures) makes the session successful for us.

    An exception here does not mean the session failed for everyone: keep the host secret key, since
    another participant may hold the recovery data. Raises FaultyCoordinatorError, MessageLengthError.
    """
    params, eq_input, dkg_output = state2
    if len(cmsg2) != certeq_cert_len(len(params.hostpubkeys)):
        raise MessageLengthError(None, "coordinator message 2 has the wrong length")
    try:
        certeq_verify(params.hostpubkeys, eq_input, cmsg2)
    except InvalidSignatureInCertificateError as e:
        raise FaultyCoordinatorError("Coordinator has provided a certificate with an invalid signature") from e
    return dkg_output, RecoveryData(eq_input + cmsg2)


def participant_investigate(error: UnknownFaultyParticipantOrCoordinatorError, cinv: bytes) -> NoReturn:
    """Find whom to blame after `participant_step2` raised `error`, given our investigation message.

    Always raises FaultyParticipantOrCoordinatorError (naming the participant that sent us a bad partial
    share) or FaultyCoordinatorError.
    """
    inv_data = error.inv_data
    if not isinstance(inv_data, encpedpop.ParticipantInvestigationData):
        raise TypeError("error does not come from participant_step2")
    n = inv_data.simpl_inv_data.n
    if len(cinv) != encpedpop.CoordinatorInvestigationMsg.len_bytes(n):
        raise MessageLengthError(None, "investigation message has the wrong length")
    try:
        cinv_parsed = encpedpop.CoordinatorInvestigationMsg.from_bytes(cinv, n)
    except MsgParseError as e:
        raise FaultyCoordinatorError(*e.args) from e
    encpedpop.participant_investigate(error, cinv_parsed)


###
### Coordinator
###


class CoordinatorState(NamedTuple):
    params: SessionParams
    eq_input: bytes
    dkg_output: DKGOutput


def coordinator_step1(pmsgs1: list[bytes], params: SessionParams) -> tuple[CoordinatorState, bytes]:
    """Aggregate the n first messages into cmsg1 (162n + 33(t-1) bytes) for all participants.

    Raises the SessionParamsError subclasses, MessageLengthError (participant_id of the bad message)
    and FaultyParticipantError.
    """
    params_validate(params)
    hostpubkeys, t = params
    n = len(hostpubkeys)
    parsed = _parse_pmsgs1(pmsgs1, t, n)
    enc_cmsg, enc_dkg_output, eq_input, enc_secshares = encpedpop.coordinator_step(parsed, t, hostpubkeys)
    eq_input += b"".join(scalar_bytes(s) for s in enc_secshares)
    state = CoordinatorState(params, eq_input, DKGOutput._make(enc_dkg_output))
    return state, CoordinatorMsg1(enc_cmsg, enc_secshares).to_bytes()


def coordinator_finalize(state: CoordinatorState, pmsgs2: list[bytes]) -> tuple[bytes, DKGOutput, RecoveryData]:
    """Collect the n transcript signatures into the certificate cmsg2 (64n bytes).

    Raises FaultyParticipantError naming the first participant with an invalid signature, and
    MessageLengthError for a wrong count or a signature that is not 64 bytes.
    """
    params, eq_input, dkg_output = state
    n = len(params.hostpubkeys)
    if len(pmsgs2) != n:
        raise MessageLengthError(None, f"need {n} second messages, got {len(pmsgs2)}")
    for i, pmsg2 in enumerate(pmsgs2):
        if len(pmsg2) != 64:
            raise MessageLengthError(i, "participant message 2 must be 64 bytes")
    cert = certeq_coordinator_step(pmsgs2)
    try:
        certeq_verify(params.hostpubkeys, eq_input, cert)
    except InvalidSignatureInCertificateError as e:
        raise FaultyParticipantError(
            e.participant_id, "Participant has provided an invalid signature for the certificate"
        ) from e
    return cert, dkg_output, RecoveryData(eq_input + cert)


def coordinator_investigate(pmsgs1: list[bytes], params: SessionParams) -> list[bytes]:
    """One investigation message per participant (65n bytes each, nothing secret in them)."""
    params_validate(params)
    parsed = _parse_pmsgs1(pmsgs1, params.t, len(params.hostpubkeys))
    return [cinv.to_bytes() for cinv in encpedpop.coordinator_investigate(parsed)]


def investigation_msg_for(pmsgs1: list[bytes], params: SessionParams, participant_id: int) -> bytes:
    """`coordinator_investigate(pmsgs1, params)[participant_id]` at 1/n of the cost.

    Without a coordinator, each member that needs an investigation computes only its own message.
    """
    params_validate(params)
    n = len(params.hostpubkeys)
    if not 0 <= participant_id < n:
        raise ValueError("participant id out of range")
    parsed = _parse_pmsgs1(pmsgs1, params.t, n)
    return encpedpop.coordinator_investigate_for(parsed, participant_id).to_bytes()


###
### Coordinator-free use
###


def aggregate_round1(pmsgs1: list[bytes], params: SessionParams) -> tuple[CoordinatorState, bytes]:
    """The coordinator's aggregation, computed by each member itself when there is no coordinator.

    It is a deterministic function of the n first messages, so members that received the same pmsg1
    list compute the same cmsg1. Safety does not depend on that (differing lists make CertEq fail),
    but blame does: a member that equivocated in round 1 would make honest members' signatures look
    invalid to each other, so round 1 needs echo broadcast. Round 2 needs plain broadcast only: a
    member holding all n valid signatures can convince any other later with the recovery data. A member:
      1. `participant_step1` -> broadcast pmsg1 (echo broadcast);
      2. once all n pmsg1 are delivered: `aggregate_round1(pmsgs1, params)` -> (cstate, cmsg1) locally,
         then `participant_step2(hostseckey, state1, cmsg1, aux_rand)` -> broadcast pmsg2;
      3. once all n pmsg2 are delivered: `aggregate_round2(cstate, pmsgs2)` -> cmsg2 locally, then
         `participant_finalize(state2, cmsg2)` -> (DKGOutput, recovery data).
    With no coordinator to frame anyone, a FaultyParticipantError or FaultyParticipantOrCoordinatorError
    names the faulty member; on UnknownFaultyParticipantOrCoordinatorError the member computes
    `investigation_msg_for(pmsgs1, params, own id)` and passes it to `participant_investigate`, which
    names the member that sent it a bad share. FaultyCoordinatorError cannot arise from a correct
    local aggregation.
    """
    return coordinator_step1(pmsgs1, params)


def aggregate_round2(cstate: CoordinatorState, pmsgs2: list[bytes]) -> bytes:
    """The certificate from the n broadcast second messages (see `aggregate_round1`)."""
    cmsg2, _, _ = coordinator_finalize(cstate, pmsgs2)
    return cmsg2


###
### Recovery
###


def recover(hostseckey: bytes | None, recovery_data: bytes) -> tuple[DKGOutput, SessionParams]:
    try:
        t, sum_coms, hostpubkeys, pubnonces, enc_secshares, cert = deserialize_recovery_data(recovery_data)
    except ValueError as e:
        raise RecoveryDataError("Failed to deserialize recovery data") from e
    n = len(hostpubkeys)
    params = SessionParams(hostpubkeys, t)
    try:
        params_validate(params)
    except SessionParamsError as e:
        raise RecoveryDataError("Invalid session parameters in recovery data") from e
    eq_input = recovery_data[: -len(cert)]
    try:
        certeq_verify(hostpubkeys, eq_input, cert)
    except InvalidSignatureInCertificateError as e:
        raise RecoveryDataError("Invalid certificate in recovery data") from e
    try:
        sum_coms_tweaked, tweak, _ = sum_coms.invalid_taproot_commit()
    except ValueError as e:
        raise RecoveryDataError("Invalid commitment in recovery data") from e
    thresh_pk = sum_coms_tweaked.commitment_to_secret()
    pubshares = sum_coms_tweaked.pubshares(n)
    if thresh_pk is None or any(p is None for p in pubshares):
        raise RecoveryDataError("Invalid commitment in recovery data")

    secshare_bytes = None
    if hostseckey is not None:
        hostpubkey = hostpubkey_gen(hostseckey)
        participant_id = _participant_id(
            hostpubkey, hostpubkeys, "Host secret key does not match any host public key in the recovery data"
        )
        enc_context = encpedpop.serialize_enc_context(t, hostpubkeys)
        try:
            secshare = encpedpop.decrypt_sum(
                hostseckey, hostpubkey, pubnonces, enc_context, participant_id, enc_secshares[participant_id]
            )
        except FaultyParticipantOrCoordinatorError as e:
            raise RecoveryDataError("Invalid public nonce in recovery data") from e
        secshare_tweaked = (secshare + tweak) % N
        # Our own signature is in the certificate, so we checked this during the session already.
        if not verify_secshare(secshare_tweaked, pubshares[participant_id]):
            raise RecoveryDataError("Recovered secret share does not match its public share")
        secshare_bytes = scalar_bytes(secshare_tweaked)

    dkg_output = DKGOutput(secshare_bytes, cbytes(thresh_pk), [cbytes(p) for p in pubshares if p is not None])
    return dkg_output, params


def participant_recover(hostseckey: bytes, recovery_data: bytes) -> tuple[DKGOutput, SessionParams]:
    """A participant's DKG output from its host secret key and the session's recovery data.

    Raises HostSeckeyError (invalid key or not in the session), ValueError (key not 32 bytes),
    RecoveryDataError (malformed data, invalid parameters or certificate).
    """
    if hostseckey is None:
        raise ValueError("host secret key required")
    return recover(hostseckey, recovery_data)


def coordinator_recover(recovery_data: bytes) -> tuple[DKGOutput, SessionParams]:
    """The coordinator's (public) DKG output from the recovery data; raises RecoveryDataError."""
    return recover(None, recovery_data)


###
### Recovery acknowledgments
###

RECOVERY_ACK_PREFIX = (BIP_TAG + "recovery acknowledgment").encode().ljust(33, b"\x00")


def recovery_ack_message(x: bytes, participant_id: int) -> bytes:
    return RECOVERY_ACK_PREFIX + participant_id.to_bytes(4, "big") + x


def _check_recovery_data_matches(recovery_data: bytes, params: SessionParams) -> None:
    try:
        t_rec, _, hostpubkeys_rec, _, _, _ = deserialize_recovery_data(recovery_data)
    except ValueError as e:
        raise RecoveryDataError("Failed to deserialize recovery data") from e
    if t_rec != params.t or hostpubkeys_rec != list(params.hostpubkeys):
        raise RecoveryDataError("Recovery data does not match the provided session parameters")


def participant_recovery_ack_sign(
    hostseckey: bytes, recovery_data: bytes, params: SessionParams, aux_rand: bytes
) -> bytes:
    """Sign that we hold the recovery data (64 bytes); members should collect all n before use."""
    hostpubkey = hostpubkey_gen(hostseckey)
    params_validate(params)
    participant_id = _participant_id(
        hostpubkey, params.hostpubkeys, "Host secret key does not match any host public key"
    )
    if len(aux_rand) != 32:
        raise ValueError("aux_rand must be 32 bytes")
    _check_recovery_data_matches(recovery_data, params)
    return schnorr_sign(recovery_ack_message(recovery_data, participant_id), hostseckey, aux_rand)


def participant_recovery_acks_verify(recovery_data: bytes, params: SessionParams, ack_sigs: list[bytes]) -> None:
    """Raises InvalidRecoveryAckError naming the first participant whose acknowledgment is invalid."""
    params_validate(params)
    if len(ack_sigs) != len(params.hostpubkeys):
        raise MessageLengthError(None, "need one acknowledgment per participant")
    _check_recovery_data_matches(recovery_data, params)
    for i, sig in enumerate(ack_sigs):
        if len(sig) != 64:
            raise MessageLengthError(i, "acknowledgment must be 64 bytes")
        if not schnorr_verify(recovery_ack_message(recovery_data, i), params.hostpubkeys[i][1:33], sig):
            raise InvalidRecoveryAckError(i, "invalid recovery acknowledgment")

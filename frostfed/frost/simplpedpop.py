"""SimplPedPop: Pedersen DKG with proofs of possession (ChillDKG reference module `simplpedpop.py`).

Each participant shares a random polynomial by Feldman VSS and proves possession of its constant
term; the coordinator sums the commitments to the non-constant terms (Pedersen's trick) so every
participant checks one summed commitment instead of n. Secret shares travel outside this layer
(EncPedPop encrypts them). Functions take parsed messages so the layers above parse each point once.
"""

from __future__ import annotations

from typing import NamedTuple, NoReturn

from .chilldkg_bip340 import schnorr_sign, schnorr_verify_point
from .dkg_errors import (
    FaultyCoordinatorError,
    FaultyParticipantError,
    FaultyParticipantOrCoordinatorError,
    MsgParseError,
    ProtocolError,
    UnknownFaultyParticipantOrCoordinatorError,
)
from .secp import N, Point, cbytes, cbytes_ext, cpoint_ext, point_add, point_neg, point_sum
from .vss import (
    BIP_TAG,
    VSSCommitment,
    commit,
    generate_coeffs,
    points_equal,
    scalar_bytes,
    secshares,
    verify_secshare,
)

POP_MSG_TAG = BIP_TAG + "pop message"


class SecshareSumError(ValueError):
    """The partial secret shares of an investigation do not add up to the received share."""


def pop_msg(participant_id: int) -> bytes:
    return participant_id.to_bytes(4, "big")


def pop_prove(seckey: int, participant_id: int, aux_rand: bytes) -> bytes:
    """Proof of possession of the constant term: binds the commitment to its owner's id."""
    return schnorr_sign(pop_msg(participant_id), scalar_bytes(seckey), aux_rand, tag_prefix=POP_MSG_TAG)


def pop_verify(pop: bytes, com_to_secret: Point, participant_id: int) -> bool:
    if com_to_secret is None:
        return False
    return schnorr_verify_point(pop_msg(participant_id), com_to_secret, pop, tag_prefix=POP_MSG_TAG)


class ParticipantMsg(NamedTuple):
    com: VSSCommitment
    pop: bytes

    @staticmethod
    def len_bytes(t: int) -> int:
        return 33 * t + 64

    @staticmethod
    def from_bytes(b: bytes, t: int) -> ParticipantMsg:
        if len(b) != ParticipantMsg.len_bytes(t):
            raise ValueError("SimplPedPop participant message has the wrong length")
        try:
            com = VSSCommitment.from_bytes(b[: 33 * t], t)
        except ValueError as e:
            raise MsgParseError("invalid VSS commitment") from e
        return ParticipantMsg(com, b[33 * t :])

    def to_bytes(self) -> bytes:
        return self.com.to_bytes() + self.pop


class CoordinatorMsg(NamedTuple):
    coms_to_secrets: list[Point]
    sum_coms_to_nonconst_terms: list[Point]
    pops: list[bytes]

    @staticmethod
    def len_bytes(t: int, n: int) -> int:
        return 97 * n + 33 * (t - 1)

    @staticmethod
    def from_bytes(b: bytes, t: int, n: int) -> CoordinatorMsg:
        if len(b) != CoordinatorMsg.len_bytes(t, n):
            raise ValueError("SimplPedPop coordinator message has the wrong length")
        try:
            coms_to_secrets = [cpoint_ext(b[i : i + 33]) for i in range(0, 33 * n, 33)]
        except ValueError as e:
            raise MsgParseError("invalid commitment to secret") from e
        rest = b[33 * n :]
        try:
            sum_coms = [cpoint_ext(rest[i : i + 33]) for i in range(0, 33 * (t - 1), 33)]
        except ValueError as e:
            raise MsgParseError("invalid sum commitment to non-constant term") from e
        rest = rest[33 * (t - 1) :]
        pops = [rest[i : i + 64] for i in range(0, 64 * n, 64)]
        return CoordinatorMsg(coms_to_secrets, sum_coms, pops)

    def to_bytes(self) -> bytes:
        return b"".join(cbytes_ext(p) for p in self.coms_to_secrets + self.sum_coms_to_nonconst_terms) + b"".join(
            self.pops
        )


class CoordinatorInvestigationMsg(NamedTuple):
    partial_pubshares: list[Point]

    @staticmethod
    def len_bytes(n: int) -> int:
        return 33 * n

    @staticmethod
    def from_bytes(b: bytes, n: int) -> CoordinatorInvestigationMsg:
        if len(b) != CoordinatorInvestigationMsg.len_bytes(n):
            raise ValueError("investigation message has the wrong length")
        try:
            return CoordinatorInvestigationMsg([cpoint_ext(b[i : i + 33]) for i in range(0, 33 * n, 33)])
        except ValueError as e:
            raise MsgParseError("invalid partial pubshare") from e

    def to_bytes(self) -> bytes:
        return b"".join(cbytes_ext(p) for p in self.partial_pubshares)


class DKGOutput(NamedTuple):
    secshare: bytes | None  # None for the coordinator
    thresh_pk: bytes
    pubshares: list[bytes]

    def __repr__(self) -> str:
        return f"DKGOutput(thresh_pk={self.thresh_pk.hex()}, <secret share hidden>)"


class ParticipantState(NamedTuple):
    t: int
    n: int
    participant_id: int
    com_to_secret: Point


class ParticipantInvestigationData(NamedTuple):
    n: int
    participant_id: int
    secshare: int
    pubshare: Point

    def __repr__(self) -> str:  # holds the (unverified) secret share
        return f"ParticipantInvestigationData(n={self.n}, participant_id={self.participant_id}, <secret>)"


def assemble_sum_coms(coms_to_secrets: list[Point], sum_coms_to_nonconst_terms: list[Point]) -> VSSCommitment:
    return VSSCommitment([point_sum(coms_to_secrets), *sum_coms_to_nonconst_terms])


def _encode_output(secshare: int | None, sum_coms_tweaked: VSSCommitment, pubshares: list[Point]) -> DKGOutput:
    thresh_pk = sum_coms_tweaked.commitment_to_secret()
    if thresh_pk is None:
        raise ProtocolError("threshold public key is infinity")
    for i, p in enumerate(pubshares):
        if p is None:
            raise ProtocolError(f"public share of participant {i} is infinity")
    return DKGOutput(
        None if secshare is None else scalar_bytes(secshare),
        cbytes(thresh_pk),
        [cbytes(p) for p in pubshares if p is not None],
    )


def participant_step1(
    seed: bytes, t: int, n: int, participant_id: int, aux_rand: bytes
) -> tuple[ParticipantState, ParticipantMsg, list[int]]:
    """Returns the state, the message for the coordinator, and the n partial secret shares
    (entry i is for participant i, to be sent privately)."""
    if not 1 <= t <= n:
        raise ValueError("threshold out of range")
    if not 0 <= participant_id < n:
        raise ValueError("participant id out of range")
    if len(seed) != 32 or len(aux_rand) != 32:
        raise ValueError("seed and aux_rand must be 32 bytes")
    coeffs = generate_coeffs(seed, t)
    partial_secshares = secshares(coeffs, n)
    pop = pop_prove(coeffs[0], participant_id, aux_rand)
    com = commit(coeffs)
    state = ParticipantState(t, n, participant_id, com.commitment_to_secret())
    return state, ParticipantMsg(com, pop), partial_secshares


def participant_step2(state: ParticipantState, cmsg: CoordinatorMsg, secshare: int) -> tuple[DKGOutput, bytes]:
    t, n, participant_id, com_to_secret = state
    coms_to_secrets, sum_coms_to_nonconst_terms, pops = cmsg
    if not points_equal(coms_to_secrets[participant_id], com_to_secret):
        raise FaultyCoordinatorError("Coordinator sent unexpected first group element for local participant id")
    for i in range(n):
        if i == participant_id:
            continue
        if coms_to_secrets[i] is None:
            raise FaultyParticipantOrCoordinatorError(i, "Participant sent invalid commitment")
        if not pop_verify(pops[i], coms_to_secrets[i], i):
            raise FaultyParticipantOrCoordinatorError(i, "Participant sent invalid proof-of-knowledge")

    sum_coms = assemble_sum_coms(coms_to_secrets, sum_coms_to_nonconst_terms)
    # Checking the tweaked share against the tweaked pubshare is equivalent to the untweaked check and
    # leaves the untweaked pubshare to the error path.
    sum_coms_tweaked, tweak, pubtweak = sum_coms.invalid_taproot_commit()
    pubshares = sum_coms_tweaked.pubshares(n)
    secshare_tweaked = (secshare + tweak) % N
    if not verify_secshare(secshare_tweaked, pubshares[participant_id]):
        pubshare = point_add(pubshares[participant_id], point_neg(pubtweak))
        raise UnknownFaultyParticipantOrCoordinatorError(
            ParticipantInvestigationData(n, participant_id, secshare, pubshare),
            "Received invalid secshare; consider using participant_investigate() to determine a faulty party",
        )
    dkg_output = _encode_output(secshare_tweaked, sum_coms_tweaked, pubshares)
    eq_input = t.to_bytes(4, "big") + sum_coms.to_bytes()
    return dkg_output, eq_input


def participant_investigate(
    error: UnknownFaultyParticipantOrCoordinatorError,
    cinv: CoordinatorInvestigationMsg,
    partial_secshares: list[int],
) -> NoReturn:
    n, participant_id, secshare, pubshare = error.inv_data
    if len(partial_secshares) != n:
        raise ValueError("need one partial secret share per participant")
    if not points_equal(point_sum(cinv.partial_pubshares), pubshare):
        raise FaultyCoordinatorError("Sum of partial pubshares not equal to pubshare")
    if sum(partial_secshares) % N != secshare:
        raise SecshareSumError("Sum of partial secshares not equal to secshare")
    for i in range(n):
        if not verify_secshare(partial_secshares[i], cinv.partial_pubshares[i]):
            if i != participant_id:
                raise FaultyParticipantOrCoordinatorError(i, "Participant sent invalid partial secshare")
            raise FaultyCoordinatorError("Coordinator fiddled with the share from me to myself")
    raise RuntimeError("participant_investigate() was called, but all inputs are consistent.")


def _blame_infinite_sum(pmsgs: list[ParticipantMsg]) -> NoReturn:
    # The commitments to the secrets sum to infinity: some proof of possession must be invalid,
    # since a valid one for every commitment would mean knowing the discrete logarithms.
    for i, pmsg in enumerate(pmsgs):
        if not pop_verify(pmsg.pop, pmsg.com.commitment_to_secret(), i):
            raise FaultyParticipantError(i, "Participant sent invalid proof-of-knowledge")
    raise ProtocolError("commitments to the secrets sum to infinity")


def coordinator_step(pmsgs: list[ParticipantMsg], t: int, n: int) -> tuple[CoordinatorMsg, DKGOutput, bytes]:
    if len(pmsgs) != n:
        raise ValueError("need one message per participant")
    coms_to_secrets = [pmsg.com.commitment_to_secret() for pmsg in pmsgs]
    sum_coms_to_nonconst_terms = [point_sum(pmsg.com.ges[j] for pmsg in pmsgs) for j in range(1, t)]
    pops = [pmsg.pop for pmsg in pmsgs]
    cmsg = CoordinatorMsg(coms_to_secrets, sum_coms_to_nonconst_terms, pops)
    sum_coms = assemble_sum_coms(coms_to_secrets, sum_coms_to_nonconst_terms)
    if sum_coms.commitment_to_secret() is None:
        _blame_infinite_sum(pmsgs)
    sum_coms_tweaked, _, _ = sum_coms.invalid_taproot_commit()
    dkg_output = _encode_output(None, sum_coms_tweaked, sum_coms_tweaked.pubshares(n))
    eq_input = t.to_bytes(4, "big") + sum_coms.to_bytes()
    return cmsg, dkg_output, eq_input


def coordinator_investigate_for(pmsgs: list[ParticipantMsg], participant_id: int) -> CoordinatorInvestigationMsg:
    """The pubshare each participant's own commitment gives `participant_id`."""
    return CoordinatorInvestigationMsg([pmsg.com.pubshare(participant_id) for pmsg in pmsgs])


def coordinator_investigate(pmsgs: list[ParticipantMsg]) -> list[CoordinatorInvestigationMsg]:
    return [coordinator_investigate_for(pmsgs, i) for i in range(len(pmsgs))]

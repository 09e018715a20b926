"""ChillDKG sessions run in process: honest runs, recovery, faulty participants and blame."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from coincurve import PublicKeyXOnly
from dealer import DealtKeys
from frost_session import full_sign
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frostfed.frost import chilldkg
from frostfed.frost.chilldkg import (
    DKGOutput,
    FaultyCoordinatorError,
    FaultyParticipantError,
    FaultyParticipantOrCoordinatorError,
    MessageLengthError,
    RecoveryDataError,
    SessionParams,
    UnknownFaultyParticipantOrCoordinatorError,
)
from frostfed.frost.secp import (
    N,
    bytes_from_int,
    cbytes,
    cpoint,
    int_from_bytes,
    point_add,
    point_mul_g,
    point_sum,
    schnorr_verify,
    tagged_hash,
    xbytes,
)

SIZES = [(2, 3), (3, 5), (7, 10), (11, 15)]


def seed_of(i: int) -> bytes:
    """Host seeds as a node would derive them (deterministic here so failures are reproducible)."""
    return hashlib.sha256(b"host seed %d" % i).digest()


def key_of(i: int) -> bytes:
    return chilldkg.hostkey_gen(seed_of(i))[0]


@dataclass
class Session:
    """One DKG session; `pmsg1_hook`/`pmsg2_hook` let a test make a participant misbehave."""

    t: int
    n: int
    pmsg1_hook: Callable[[int, bytes], bytes] = lambda i, m: m
    pmsg2_hook: Callable[[int, bytes], bytes] = lambda i, m: m
    seeds: list[bytes] = field(init=False)
    params: SessionParams = field(init=False)
    pmsgs1: list[bytes] = field(default_factory=list)
    step2_errors: dict[int, Exception] = field(default_factory=dict)
    finalize_errors: dict[int, Exception] = field(default_factory=dict)
    outputs: dict[int, tuple[DKGOutput, bytes]] = field(default_factory=dict)
    coordinator_error: Exception | None = None
    coordinator_output: tuple[bytes, DKGOutput, bytes] | None = None

    def __post_init__(self) -> None:
        self.seeds = [key_of(i) for i in range(self.n)]  # host secret keys derived from the seeds
        self.params = SessionParams([chilldkg.hostpubkey_gen(s) for s in self.seeds], self.t)

    def run(self) -> Session:
        states1 = []
        for i, seed in enumerate(self.seeds):
            state1, pmsg1 = chilldkg.participant_step1(seed, self.params, os.urandom(32))
            states1.append(state1)
            self.pmsgs1.append(self.pmsg1_hook(i, pmsg1))
        cstate, cmsg1 = chilldkg.coordinator_step1(self.pmsgs1, self.params)
        states2, pmsgs2 = {}, {}
        for i, seed in enumerate(self.seeds):
            try:
                states2[i], pmsg2 = chilldkg.participant_step2(seed, states1[i], cmsg1, os.urandom(32))
                pmsgs2[i] = self.pmsg2_hook(i, pmsg2)
            except chilldkg.ProtocolError as e:
                self.step2_errors[i] = e
        if len(pmsgs2) < self.n:
            return self  # a participant that aborted sends nothing: the coordinator cannot finish
        try:
            self.coordinator_output = chilldkg.coordinator_finalize(cstate, [pmsgs2[i] for i in range(self.n)])
        except chilldkg.ProtocolError as e:
            self.coordinator_error = e
            return self
        cmsg2 = self.coordinator_output[0]
        for i, state2 in states2.items():
            try:
                self.outputs[i] = chilldkg.participant_finalize(state2, cmsg2)
            except chilldkg.ProtocolError as e:
                self.finalize_errors[i] = e
        return self


def lagrange_at_zero(ids: list[int]) -> list[int]:
    xs = [i + 1 for i in ids]
    coeffs = []
    for xi in xs:
        num, den = 1, 1
        for xj in xs:
            if xj != xi:
                num = num * xj % N
                den = den * (xj - xi) % N
        coeffs.append(num * pow(den, -1, N) % N)
    return coeffs


def assert_no_key_anywhere(s: Session) -> None:
    """The DKG failed for everyone: no participant and no coordinator holds a successful output."""
    assert s.outputs == {}
    assert s.coordinator_output is None


@pytest.mark.parametrize(("t", "n"), SIZES)
def test_every_participant_ends_with_the_same_threshold_key(t: int, n: int) -> None:
    s = Session(t, n).run()
    assert sorted(s.outputs) == list(range(n))
    assert s.coordinator_output is not None
    _, cout, crecovery = s.coordinator_output
    for i, (out, recovery_data) in s.outputs.items():
        assert out.thresh_pk == cout.thresh_pk
        assert out.pubshares == cout.pubshares
        assert recovery_data == crecovery
        assert out.secshare is not None
        assert cbytes(point_mul_g(int_from_bytes(out.secshare))) == out.pubshares[i]


@pytest.mark.parametrize(("t", "n"), SIZES)
def test_any_t_shares_interpolate_to_the_threshold_key(t: int, n: int) -> None:
    s = Session(t, n).run()
    thresh_pk = s.outputs[0][0].thresh_pk
    for ids in (list(range(t)), list(range(n - t, n)), sorted(random.Random(n).sample(range(n), t))):
        lam = lagrange_at_zero(ids)
        x = sum(c * int_from_bytes(s.outputs[i][0].secshare or b"") for c, i in zip(lam, ids, strict=True)) % N
        assert cbytes(point_mul_g(x)) == thresh_pk
    if t > 1:  # t - 1 shares give some other key
        ids = list(range(t - 1))
        lam = lagrange_at_zero(ids)
        x = sum(c * int_from_bytes(s.outputs[i][0].secshare or b"") for c, i in zip(lam, ids, strict=True)) % N
        assert cbytes(point_mul_g(x)) != thresh_pk


@pytest.mark.parametrize(("t", "n"), SIZES)
def test_threshold_key_commits_to_an_unspendable_script_path(t: int, n: int) -> None:
    """thresh_pk = P + TapTweak(xbytes(P))*G, P the sum of every participant's commitment to its secret
    (read from the first 33 bytes of each first message): BIP 341's key with no script path."""
    s = Session(t, n).run()
    p = point_sum(cpoint(m[:33]) for m in s.pmsgs1)
    assert p is not None
    tweak = int_from_bytes(tagged_hash("TapTweak", xbytes(p)))
    expected = point_add(p, point_mul_g(tweak))
    assert expected is not None
    assert s.outputs[0][0].thresh_pk == cbytes(expected)
    assert s.outputs[0][0].thresh_pk != cbytes(p)


def run_without_coordinator(
    t: int,
    n: int,
    pmsg1_hook: Callable[[int, bytes], bytes] = lambda i, m: m,
    pmsg2_hook: Callable[[int, bytes], bytes] = lambda i, m: m,
) -> tuple[SessionParams, list[bytes], dict[int, tuple[DKGOutput, bytes]], dict[int, Exception]]:
    """Every member aggregates the broadcast messages itself; returns params, the broadcast first
    messages, each member's (output, recovery data) and each member's error."""
    keys = [key_of(i) for i in range(n)]
    params = SessionParams([chilldkg.hostpubkey_gen(k) for k in keys], t)
    states1 = []
    broadcast1 = []
    for i, k in enumerate(keys):
        state1, pmsg1 = chilldkg.participant_step1(k, params, os.urandom(32))
        states1.append(state1)
        broadcast1.append(pmsg1_hook(i, pmsg1))
    errors: dict[int, Exception] = {}
    cstates, states2, broadcast2 = {}, {}, {}
    cmsgs1 = set()
    for i, k in enumerate(keys):
        try:
            cstates[i], cmsg1 = chilldkg.aggregate_round1(broadcast1, params)
            cmsgs1.add(cmsg1)
            states2[i], pmsg2 = chilldkg.participant_step2(k, states1[i], cmsg1, os.urandom(32))
            broadcast2[i] = pmsg2_hook(i, pmsg2)
        except chilldkg.ProtocolError as e:
            errors[i] = e
    assert len(cmsgs1) <= 1, "members computed different aggregates"
    outputs = {}
    if len(broadcast2) == n:
        for i in states2:
            try:
                cmsg2 = chilldkg.aggregate_round2(cstates[i], [broadcast2[j] for j in range(n)])
                outputs[i] = chilldkg.participant_finalize(states2[i], cmsg2)
            except chilldkg.ProtocolError as e:
                errors[i] = e
    return params, broadcast1, outputs, errors


def test_coordinator_free_members_compute_the_same_aggregate() -> None:
    """Each member aggregates the echo-broadcast first messages itself and reaches the same key."""
    _, _, outputs, errors = run_without_coordinator(3, 5)
    assert errors == {}
    assert sorted(outputs) == list(range(5))
    assert len({(out.thresh_pk, tuple(out.pubshares), rec) for out, rec in outputs.values()}) == 1


def test_coordinator_free_faults_name_the_faulty_member() -> None:
    t, n = 3, 5

    def flip(m: bytes, at: int) -> bytes:
        return m[:at] + bytes([m[at] ^ 1]) + m[at + 1 :]

    _, _, outputs, errors = run_without_coordinator(t, n, pmsg1_hook=lambda i, m: flip(m, 33 * t + 9) if i == 1 else m)
    assert outputs == {}
    assert set(errors) == {0, 2, 3, 4}
    assert all(isinstance(e, FaultyParticipantOrCoordinatorError) and e.participant_id == 1 for e in errors.values())

    _, _, outputs, errors = run_without_coordinator(t, n, pmsg2_hook=lambda i, m: flip(m, 40) if i == 2 else m)
    assert outputs == {}
    assert set(errors) == set(range(n))
    assert all(isinstance(e, FaultyParticipantError) and e.participant_id == 2 for e in errors.values())

    params, broadcast1, outputs, errors = run_without_coordinator(
        t, n, pmsg1_hook=lambda i, m: add_to_encrypted_share(m, t, n, 0, 1) if i == 4 else m
    )
    assert outputs == {}
    assert set(errors) == {0}
    assert isinstance(errors[0], UnknownFaultyParticipantOrCoordinatorError)
    with pytest.raises(FaultyParticipantOrCoordinatorError) as blamed:
        chilldkg.participant_investigate(errors[0], chilldkg.investigation_msg_for(broadcast1, params, 0))
    assert blamed.value.participant_id == 4


@pytest.mark.parametrize(("t", "n"), [(2, 3), (7, 10)])
def test_recovery_from_host_seed_and_recovery_data(t: int, n: int) -> None:
    s = Session(t, n).run()
    for i in (0, n - 1):
        out, recovery_data = s.outputs[i]
        recovered, params = chilldkg.participant_recover(key_of(i), recovery_data)
        assert recovered == out
        assert params == s.params
    public, _ = chilldkg.coordinator_recover(s.outputs[0][1])
    assert public == s.outputs[0][0]._replace(secshare=None)
    outsider = chilldkg.hostkey_gen(hashlib.sha256(b"not a member").digest())[0]
    with pytest.raises(chilldkg.HostSeckeyError):
        chilldkg.participant_recover(outsider, s.outputs[0][1])


@pytest.mark.parametrize("offset", [0, 4, 40, -1, -100, -200])
def test_tampered_recovery_data_is_rejected(offset: int) -> None:
    """A changed byte anywhere (t, commitments, host keys, nonces, encrypted shares, certificate)."""
    t, n = 2, 3
    s = Session(t, n).run()
    recovery_data = bytearray(s.outputs[0][1])
    recovery_data[offset] ^= 0x01
    with pytest.raises(RecoveryDataError):
        chilldkg.participant_recover(key_of(0), bytes(recovery_data))
    with pytest.raises(RecoveryDataError):
        chilldkg.participant_recover(key_of(0), bytes(recovery_data[:-1]))


def add_to_encrypted_share(pmsg1: bytes, t: int, n: int, recipient: int, delta: int) -> bytes:
    """Encryption is additive mod N, so adding to a ciphertext adds to the plaintext share."""
    start = 33 * t + 64 + 33 + 32 * recipient
    c = (int_from_bytes(pmsg1[start : start + 32]) + delta) % N
    return pmsg1[:start] + bytes_from_int(c) + pmsg1[start + 32 :]


@pytest.mark.parametrize(("t", "n"), [(2, 3), (7, 10)])
def test_wrong_share_to_one_participant_fails_the_dkg_and_investigation_names_the_sender(t: int, n: int) -> None:
    cheater, victim = n - 1, 0
    s = Session(t, n, pmsg1_hook=lambda i, m: add_to_encrypted_share(m, t, n, victim, 1) if i == cheater else m).run()
    assert set(s.step2_errors) == {victim}
    error = s.step2_errors[victim]
    assert isinstance(error, UnknownFaultyParticipantOrCoordinatorError)
    assert_no_key_anywhere(s)
    cinvs = chilldkg.coordinator_investigate(s.pmsgs1, s.params)
    with pytest.raises(FaultyParticipantOrCoordinatorError) as blamed:
        chilldkg.participant_investigate(error, cinvs[victim])
    assert blamed.value.participant_id == cheater
    # Without a coordinator the victim computes its own investigation message from the broadcast pmsgs1.
    own = chilldkg.investigation_msg_for(s.pmsgs1, s.params, victim)
    assert own == cinvs[victim]
    with pytest.raises(FaultyParticipantOrCoordinatorError) as blamed:
        chilldkg.participant_investigate(error, own)
    assert blamed.value.participant_id == cheater


def test_coordinator_lying_in_the_investigation_is_blamed() -> None:
    t, n = 2, 3
    s = Session(t, n, pmsg1_hook=lambda i, m: add_to_encrypted_share(m, t, n, 0, 5) if i == 2 else m).run()
    error = s.step2_errors[0]
    assert isinstance(error, UnknownFaultyParticipantOrCoordinatorError)
    cinv = bytearray(chilldkg.coordinator_investigate(s.pmsgs1, s.params)[0])
    cinv[31] ^= 1  # the encrypted partial share from participant 0 to itself
    with pytest.raises(FaultyCoordinatorError):
        chilldkg.participant_investigate(error, bytes(cinv))


@pytest.mark.parametrize(("t", "n"), [(3, 5), (11, 15)])
def test_wrong_proof_of_possession_fails_the_dkg_and_names_the_participant(t: int, n: int) -> None:
    cheater = 1

    def bad_pop(i: int, m: bytes) -> bytes:
        if i != cheater:
            return m
        pop_at = 33 * t + 40
        return m[:pop_at] + bytes([m[pop_at] ^ 1]) + m[pop_at + 1 :]

    s = Session(t, n, pmsg1_hook=bad_pop).run()
    assert set(s.step2_errors) == set(range(n)) - {cheater}
    for e in s.step2_errors.values():
        assert isinstance(e, FaultyParticipantOrCoordinatorError)
        assert e.participant_id == cheater
    assert_no_key_anywhere(s)


@pytest.mark.parametrize(("t", "n"), [(2, 3), (7, 10)])
def test_commitment_with_more_than_t_coefficients_is_refused(t: int, n: int) -> None:
    """The threshold-raising attack: a contribution of degree t would need t + 1 shares to sign."""
    cheater = 0
    seeds = [key_of(i) for i in range(n)]
    params = SessionParams([chilldkg.hostpubkey_gen(sd) for sd in seeds], t)
    raised = SessionParams(params.hostpubkeys, t + 1)
    pmsgs1 = [
        chilldkg.participant_step1(sd, raised if i == cheater else params, os.urandom(32))[1]
        for i, sd in enumerate(seeds)
    ]
    for aggregate in (chilldkg.coordinator_step1, chilldkg.aggregate_round1):
        with pytest.raises(MessageLengthError) as blamed:
            aggregate(pmsgs1, params)
        assert blamed.value.participant_id == cheater


@pytest.mark.parametrize(("t", "n"), [(2, 3), (7, 10)])
def test_shares_of_a_higher_degree_polynomial_are_caught_and_blamed(t: int, n: int) -> None:
    """The same attack inside a well-formed message: the shares lie on f + c*x^t, the commitment on f."""
    cheater, c = 1, 0xC0FFEE

    def raise_degree(i: int, m: bytes) -> bytes:
        if i != cheater:
            return m
        for r in range(n):
            if r != cheater:
                m = add_to_encrypted_share(m, t, n, r, c * pow(r + 1, t, N))
        return m

    s = Session(t, n, pmsg1_hook=raise_degree).run()
    assert set(s.step2_errors) == set(range(n)) - {cheater}
    assert_no_key_anywhere(s)
    cinvs = chilldkg.coordinator_investigate(s.pmsgs1, s.params)
    for victim, error in s.step2_errors.items():
        assert isinstance(error, UnknownFaultyParticipantOrCoordinatorError)
        with pytest.raises(FaultyParticipantOrCoordinatorError) as blamed:
            chilldkg.participant_investigate(error, cinvs[victim])
        assert blamed.value.participant_id == cheater


@pytest.mark.parametrize(("t", "n"), [(3, 5), (7, 10)])
def test_bad_certeq_signature_fails_the_dkg_and_names_the_participant(t: int, n: int) -> None:
    cheater = 2
    s = Session(t, n, pmsg2_hook=lambda i, m: m[:63] + bytes([m[63] ^ 1]) if i == cheater else m).run()
    assert s.step2_errors == {}
    assert isinstance(s.coordinator_error, FaultyParticipantError)
    assert s.coordinator_error.participant_id == cheater
    assert_no_key_anywhere(s)


def test_certificate_with_a_bad_signature_is_refused_by_participants() -> None:
    """Should a coordinator pass on a broken certificate, every participant refuses it."""
    t, n = 2, 3
    seeds = [key_of(i) for i in range(n)]
    params = SessionParams([chilldkg.hostpubkey_gen(sd) for sd in seeds], t)
    step1 = [chilldkg.participant_step1(sd, params, os.urandom(32)) for sd in seeds]
    _, cmsg1 = chilldkg.coordinator_step1([m for _, m in step1], params)
    step2 = [chilldkg.participant_step2(seeds[i], step1[i][0], cmsg1, os.urandom(32)) for i in range(n)]
    cert = b"".join(m for _, m in step2)
    broken = cert[:64] + bytes(64) + cert[128:]
    for state2, _ in step2:
        with pytest.raises(FaultyCoordinatorError):
            chilldkg.participant_finalize(state2, broken)
    for state2, _ in step2:
        assert chilldkg.participant_finalize(state2, cert)[0].thresh_pk


def test_recovery_acknowledgments_name_a_missing_or_bad_one() -> None:
    s = Session(2, 3).run()
    recovery_data = s.outputs[0][1]
    acks = [
        chilldkg.participant_recovery_ack_sign(key_of(i), recovery_data, s.params, os.urandom(32)) for i in range(3)
    ]
    chilldkg.participant_recovery_acks_verify(recovery_data, s.params, acks)
    acks[1] = acks[0]
    with pytest.raises(chilldkg.InvalidRecoveryAckError) as blamed:
        chilldkg.participant_recovery_acks_verify(recovery_data, s.params, acks)
    assert blamed.value.participant_id == 1


def test_malformed_messages_raise_specific_errors_naming_the_sender() -> None:
    t, n = 2, 3
    s = Session(t, n).run()
    pmsgs1 = list(s.pmsgs1)
    pmsgs1[1] = pmsgs1[1][:-1]
    with pytest.raises(MessageLengthError) as blamed:
        chilldkg.coordinator_step1(pmsgs1, s.params)
    assert blamed.value.participant_id == 1
    pmsgs1 = list(s.pmsgs1)
    pmsgs1[2] = b"\x05" + pmsgs1[2][1:]  # first commitment is not a point
    with pytest.raises(FaultyParticipantError) as faulty:
        chilldkg.coordinator_step1(pmsgs1, s.params)
    assert faulty.value.participant_id == 2


def test_host_key_signatures_are_plain_bip340() -> None:
    """CertEq signatures verify with libsecp256k1 under the x-only host key."""
    s = Session(2, 3).run()
    _, recovery_data = s.outputs[1]
    cert = recovery_data[-64 * 3 :]
    eq_input = recovery_data[: -64 * 3]
    prefix = b"BIP DKG/certeq message".ljust(33, b"\x00")
    for i in range(3):
        msg = prefix + i.to_bytes(4, "big") + eq_input
        assert schnorr_verify(msg, s.params.hostpubkeys[i][1:], cert[64 * i : 64 * (i + 1)])


def dealt_from_dkg(s: Session) -> DealtKeys:
    """The DKG outputs in the shape the BIP 445 session helper takes (no dealer involved)."""
    out0 = s.outputs[0][0]
    secshares = [s.outputs[i][0].secshare or b"" for i in range(s.n)]
    return DealtKeys(out0.thresh_pk, list(range(s.n)), secshares, out0.pubshares)


@pytest.mark.parametrize(("t", "n"), SIZES)
def test_any_t_participants_sign_with_bip445(t: int, n: int) -> None:
    s = Session(t, n).run()
    keys = dealt_from_dkg(s)
    msg = hashlib.sha256(b"spend from the federation").digest()
    for signer_ids in (list(range(t)), sorted(random.Random(t).sample(range(n), t))):
        sig, *_ = full_sign(keys, t, signer_ids, msg, [], [])
        assert PublicKeyXOnly(xbytes(cpoint(keys.thresh_pk))).verify(sig, msg)


def test_recovered_participant_signs_with_bip445() -> None:
    """Participant 0 lost everything but its host seed; its recovered share signs with t-1 others."""
    t, n = 3, 5
    s = Session(t, n).run()
    recovered, _ = chilldkg.participant_recover(key_of(0), s.outputs[3][1])
    s.outputs[0] = (recovered, s.outputs[3][1])
    keys = dealt_from_dkg(s)
    msg = hashlib.sha256(b"after recovery").digest()
    sig, *_ = full_sign(keys, t, [0, 2, 4], msg, [], [])
    assert PublicKeyXOnly(xbytes(cpoint(keys.thresh_pk))).verify(sig, msg)


def test_host_key_from_seed_is_domain_separated_and_deterministic() -> None:
    seckey, pubkey = chilldkg.hostkey_gen(seed_of(7))
    assert chilldkg.hostkey_gen(seed_of(7)) == (seckey, pubkey)
    assert seckey != seed_of(7)
    assert pubkey == chilldkg.hostpubkey_gen(seckey)
    with pytest.raises(ValueError):
        chilldkg.hostkey_gen(seed_of(7)[:31])


def test_secret_share_stays_out_of_reprs() -> None:
    s = Session(2, 3).run()
    out = s.outputs[0][0]
    assert out.secshare is not None
    assert out.secshare.hex() not in repr(out)
    assert out.secshare.hex() not in repr(s.outputs)


def _fixed_transcript() -> dict[str, object]:
    """One honest 2-of-3 session with fixed randomness, keeping participant 0's states."""
    keys = [key_of(i) for i in range(3)]
    params = SessionParams([chilldkg.hostpubkey_gen(k) for k in keys], 2)
    step1 = [chilldkg.participant_step1(k, params, bytes([i + 1]) * 32) for i, k in enumerate(keys)]
    pmsgs1 = [m for _, m in step1]
    cstate, cmsg1 = chilldkg.coordinator_step1(pmsgs1, params)
    step2 = [chilldkg.participant_step2(k, step1[i][0], cmsg1, bytes(32)) for i, k in enumerate(keys)]
    cmsg2, _, recovery_data = chilldkg.coordinator_finalize(cstate, [m for _, m in step2])
    return {
        "key": keys[0],
        "params": params,
        "pmsgs1": pmsgs1,
        "state1": step1[0][0],
        "state2": step2[0][0],
        "cmsg1": cmsg1,
        "cmsg2": cmsg2,
        "recovery": recovery_data,
    }


FIXED = _fixed_transcript()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(["pmsg1", "cmsg1", "cmsg2", "recovery"]),
    pos=st.integers(min_value=0),
    value=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=-3, max_value=3),
)
def test_corrupted_messages_raise_only_specific_errors(which: str, pos: int, value: int, cut: int) -> None:
    """Any byte changed and any length changed: a ValueError or ProtocolError subclass, nothing else."""
    f = FIXED
    pmsgs1 = list(f["pmsgs1"])  # type: ignore[call-overload]
    original = pmsgs1[1] if which == "pmsg1" else f[which]
    assert isinstance(original, bytes)
    data = bytearray(original)
    data[pos % len(data)] = value
    corrupted = bytes(data + bytes(cut) if cut >= 0 else data[:cut])
    try:
        if which == "pmsg1":
            chilldkg.coordinator_step1([pmsgs1[0], corrupted, pmsgs1[2]], f["params"])  # type: ignore[arg-type]
        elif which == "cmsg1":
            chilldkg.participant_step2(f["key"], f["state1"], corrupted, bytes(32))  # type: ignore[arg-type]
        elif which == "cmsg2":
            chilldkg.participant_finalize(f["state2"], corrupted)  # type: ignore[arg-type]
        else:
            chilldkg.participant_recover(f["key"], corrupted)  # type: ignore[arg-type]
    except (ValueError, chilldkg.ProtocolError):
        assert corrupted != original

"""ROAST with simulated signers: crashed, malicious and slow ones, over a random-delay network.

For every number f <= n - t of faulty signers the run ends with valid BIP340 signatures (checked by
libsecp256k1), names exactly the malicious signers whose bad replies it saw, and starts at most
n - t + 1 sessions. With more than n - t faulty signers it ends in failure, never with a signature.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field

import pytest
from coincurve import PublicKeyXOnly
from dealer import trusted_dealer

from frostfed.frost import secp
from frostfed.frost.derivation import group_xpub, signing_tweaks
from frostfed.frost.roast import (
    Presignature,
    RoastCoordinator,
    RoastResult,
    RoastSigner,
    SessionRequest,
    SignerReply,
    SignerSession,
    SigningTask,
    ThresholdKey,
)


def make_key(t: int, n: int, seed: int) -> tuple[ThresholdKey, list[bytes]]:
    keys = trusted_dealer(t, n, seed=seed)
    return ThresholdKey(n, t, keys.thresh_pk, tuple(keys.pubshares)), keys.secshares


def make_tasks(key: ThresholdKey, count: int = 3) -> list[SigningTask]:
    """Sighashes of a transaction's inputs, each input on its own derived address."""
    root = group_xpub(key.thresh_pk, hashlib.sha256(b"cc").digest())
    tasks = [SigningTask(hashlib.sha256(b"no tweak").digest())]
    for k in range(count - 1):
        tweaks, modes, _ = signing_tweaks(root, [0, k])
        tasks.append(SigningTask(hashlib.sha256(bytes([k])).digest(), tuple(tweaks), tuple(modes)))
    return tasks


@dataclass
class Network:
    """Delivers messages after random delays; `slow` signers' messages take far longer."""

    rng: random.Random
    slow: set[int]
    fast: set[int] = field(default_factory=set)
    queue: list = field(default_factory=list)  # type: ignore[type-arg]
    now: float = 0.0
    seq: int = 0

    def send(self, signer: int, kind: str, payload: object) -> None:
        delay = self.rng.uniform(1, 10) * (50 if signer in self.slow else 1)
        if signer in self.fast:
            delay = self.rng.uniform(0.01, 0.1)
        self.seq += 1
        heapq.heappush(self.queue, (self.now + delay, self.seq, kind, signer, payload))


def simulate(
    t: int,
    n: int,
    crashed: set[int],
    malicious: set[int],
    slow: set[int],
    seed: int,
    fast: frozenset[int] = frozenset(),
    aggregate: bool = False,
    grace: float = 0.0,
    tick_starts: list[float] | None = None,
) -> tuple[RoastResult, set[int], list[SigningTask], ThresholdKey]:
    """One ROAST run; with `aggregate`, each signer gets only the session's aggregate nonces (as the
    federation sends them), else every signer's pubnonces. With `grace`, the coordinator's `tick` is
    called at each `wake_at` it names, as the federation's driver does; `tick_starts` collects the
    times of the ticks that started a session."""
    key, secshares = make_key(t, n, seed)
    tasks = make_tasks(key)
    rng = random.Random(seed)
    coordinator = RoastCoordinator(key, tasks, grace=grace)
    signers = {i: RoastSigner(key, i, secshares[i], tasks) for i in range(n)}
    net = Network(rng, slow, set(fast))
    ticks: set[float] = set()
    seen_bad: set[int] = set()  # malicious replies that reached the coordinator before the end
    for i in range(n):
        net.send(i, "to_coordinator", signers[i].presign())
    while net.queue and coordinator.result is None:
        net.now, _, kind, signer, payload = heapq.heappop(net.queue)
        if kind in ("to_coordinator", "tick"):
            if kind == "tick":
                out = coordinator.tick(net.now)
                if out and tick_starts is not None:
                    tick_starts.append(net.now)
            elif isinstance(payload, Presignature):
                out = coordinator.receive_presignature(payload, net.now)
            else:
                if signer in malicious:
                    seen_bad.add(signer)
                out = coordinator.receive_reply(payload, net.now)
            for send in out:
                net.send(send.to, "to_signer", send.request)
            wake = coordinator.wake_at
            if wake is not None and wake not in ticks:
                assert wake > net.now
                ticks.add(wake)
                net.seq += 1
                heapq.heappush(net.queue, (wake, net.seq, "tick", -1, None))
        else:
            assert isinstance(payload, SessionRequest)
            if signer in crashed:
                continue  # never answers
            reply = signers[signer].on_session(payload.signer_session() if aggregate else payload)
            if signer in malicious:
                bad = secp.bytes_from_int((secp.int_from_bytes(reply.psigs[-1]) + 1) % secp.N)
                reply = SignerReply(reply.sid, signer, (*reply.psigs[:-1], bad), reply.next_pubnonces)
            net.send(signer, "to_coordinator", reply)
    result = coordinator.result or coordinator.give_up("no message left to deliver")
    return result, seen_bad, tasks, key


def check_success(result: RoastResult, tasks: list[SigningTask], key: ThresholdKey, t: int, n: int) -> None:
    assert result.ok, result.reason
    assert result.signatures is not None and len(result.signatures) == len(tasks)
    for task, sig in zip(tasks, result.signatures, strict=True):
        assert PublicKeyXOnly(task.xonly_pk(key)).verify(sig, task.msg)
    assert result.sessions_started <= n - t + 1
    assert len(result.signer_ids) == t


SETUPS = [(2, 3), (3, 5), (4, 7), (7, 10)]


@pytest.mark.parametrize("kind", ["crashed", "malicious", "slow", "mixed"])
@pytest.mark.parametrize(("t", "n"), SETUPS)
def test_roast_succeeds_with_up_to_n_minus_t_faulty_signers(t: int, n: int, kind: str) -> None:
    for f in range(n - t + 1):
        for seed in range(3):
            rng = random.Random(f"{t}-{n}-{kind}-{f}-{seed}")
            faulty = set(rng.sample(range(n), f))
            crashed = malicious = slow = set()
            if kind == "crashed":
                crashed = faulty
            elif kind == "malicious":
                malicious = faulty
            elif kind == "slow":
                slow = faulty
            else:
                order = sorted(faulty)
                crashed, malicious, slow = set(order[0::3]), set(order[1::3]), set(order[2::3])
            result, seen_bad, tasks, key = simulate(t, n, crashed, malicious, slow, rng.randrange(2**32))
            check_success(result, tasks, key, t, n)
            assert result.malicious == seen_bad  # exactly the cheaters it saw, nobody honest
            assert not set(result.signer_ids) & (crashed | malicious)


@pytest.mark.parametrize(("t", "n"), SETUPS)
def test_session_bound_holds_when_the_faulty_signers_are_always_first(t: int, n: int) -> None:
    """Worst ordering for ROAST: faulty signers are ready first and cheat at once, honest ones are slow."""
    for f in range(n - t + 1):
        for seed in range(3):
            rng = random.Random(f"first-{t}-{n}-{f}-{seed}")
            faulty = sorted(rng.sample(range(n), f))
            crashed, malicious = set(faulty[0::2]), set(faulty[1::2])
            honest = set(range(n)) - crashed - malicious
            result, seen_bad, tasks, key = simulate(
                t, n, crashed, malicious, honest, rng.randrange(2**32), fast=frozenset(faulty)
            )
            check_success(result, tasks, key, t, n)
            assert result.malicious == seen_bad == malicious


@pytest.mark.parametrize(("t", "n"), SETUPS)
@pytest.mark.parametrize("kind", ["crashed", "malicious", "mixed"])
def test_roast_fails_cleanly_with_more_than_n_minus_t_faulty_signers(t: int, n: int, kind: str) -> None:
    for seed in range(3):
        rng = random.Random(f"fail-{t}-{n}-{kind}-{seed}")
        faulty = set(rng.sample(range(n), n - t + 1))
        if kind == "crashed":
            crashed, malicious = faulty, set()
        elif kind == "malicious":
            crashed, malicious = set(), faulty
        else:
            order = sorted(faulty)
            crashed, malicious = set(order[0::2]), set(order[1::2])
        result, seen_bad, _, _ = simulate(t, n, crashed, malicious, set(), rng.randrange(2**32))
        assert not result.ok
        assert result.signatures is None
        assert result.malicious == seen_bad
        assert result.malicious <= malicious
        if kind == "malicious":
            assert result.reason == "more than n - t signers are malicious"


def test_coordinator_ignores_stale_duplicate_and_unknown_messages() -> None:
    key, secshares = make_key(2, 3, seed=11)
    tasks = make_tasks(key, 2)
    coordinator = RoastCoordinator(key, tasks)
    signers = [RoastSigner(key, i, secshares[i], tasks) for i in range(3)]
    presigs = [s.presign() for s in signers]
    assert coordinator.receive_presignature(presigs[0]) == []
    assert coordinator.receive_presignature(presigs[0]) == []  # duplicate
    assert coordinator.receive_presignature(Presignature(7, presigs[1].pubnonces)) == []  # unknown id
    sends = coordinator.receive_presignature(presigs[1])
    assert {s.to for s in sends} == {0, 1} and coordinator.sessions_started == 1
    request = sends[0].request
    reply0 = signers[0].on_session(request)
    assert coordinator.receive_reply(SignerReply(5, 0, reply0.psigs, reply0.next_pubnonces)) == []  # wrong sid
    assert coordinator.receive_reply(reply0) == []
    assert coordinator.receive_reply(reply0) == []  # repeated
    assert coordinator.result is None and list(coordinator.ready) == [0]
    coordinator.receive_reply(signers[1].on_session(request))
    assert coordinator.result is not None and coordinator.result.ok
    assert coordinator.malicious == set()


def test_malformed_presignature_marks_the_sender_malicious() -> None:
    key, secshares = make_key(2, 3, seed=12)
    tasks = make_tasks(key, 2)
    coordinator = RoastCoordinator(key, tasks)
    good = RoastSigner(key, 0, secshares[0], tasks).presign()
    coordinator.receive_presignature(Presignature(1, good.pubnonces[:1]))  # one pubnonce short
    coordinator.receive_presignature(Presignature(2, (b"\x02" + b"\xff" * 65, good.pubnonces[1])))
    assert coordinator.malicious == {1, 2}
    assert coordinator.result is not None and not coordinator.result.ok


def test_signer_never_signs_twice_with_one_presignature() -> None:
    key, secshares = make_key(2, 3, seed=13)
    tasks = make_tasks(key, 2)
    signers = [RoastSigner(key, i, secshares[i], tasks) for i in range(3)]
    p = [s.presign() for s in signers]
    request = SessionRequest(0, (0, 1), (p[0].pubnonces, p[1].pubnonces))
    signers[0].on_session(request)
    with pytest.raises(ValueError):
        signers[0].on_session(request)  # same session again
    with pytest.raises(ValueError):
        signers[0].on_session(SessionRequest(1, (0, 1), (p[0].pubnonces, p[1].pubnonces)))  # old nonce
    with pytest.raises(ValueError):
        signers[2].on_session(SessionRequest(2, (0, 1), (p[0].pubnonces, p[1].pubnonces)))  # not a member
    with pytest.raises(ValueError):
        signers[1].presign()  # already holds one
    with pytest.raises(ValueError):
        RoastSigner(key, 0, secshares[1], tasks)  # share of somebody else


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: SignerReply(r.sid, r.signer_id, r.psigs[:1], r.next_pubnonces),  # a psig short
        lambda r: SignerReply(r.sid, r.signer_id, r.psigs, r.next_pubnonces[:1]),  # a next nonce short
        lambda r: SignerReply(r.sid, r.signer_id, ("junk", r.psigs[1]), r.next_pubnonces),  # type: ignore[arg-type]
        lambda r: SignerReply(r.sid, r.signer_id, r.psigs, (b"\x05" * 66, r.next_pubnonces[1])),
        lambda r: SignerReply(r.sid, r.signer_id, (secp.bytes_from_int(secp.N), r.psigs[1]), r.next_pubnonces),
        lambda r: SignerReply(r.sid, r.signer_id, (r.psigs[1], r.psigs[0]), r.next_pubnonces),  # swapped
    ],
)
def test_malformed_reply_marks_the_sender_malicious_and_the_run_goes_on(tamper) -> None:  # type: ignore[no-untyped-def]
    key, secshares = make_key(2, 3, seed=14)
    tasks = make_tasks(key, 2)
    coordinator = RoastCoordinator(key, tasks)
    signers = [RoastSigner(key, i, secshares[i], tasks) for i in range(3)]
    sends = []
    for s in signers:
        sends += coordinator.receive_presignature(s.presign())
    request = sends[0].request
    a, b = request.signer_ids
    c = ({0, 1, 2} - {a, b}).pop()
    assert coordinator.receive_reply(tamper(signers[a].on_session(request))) == []  # t not ready yet
    assert coordinator.malicious == {a}
    more = coordinator.receive_reply(signers[b].on_session(request))
    assert coordinator.result is None  # that session cannot finish without a
    assert {s.to for s in more} == {b, c}  # b (with its next presignature) and c start a new session
    new_request = more[0].request
    for i in (b, c):
        coordinator.receive_reply(signers[i].on_session(new_request))
    result = coordinator.result
    assert result is not None and result.ok and result.malicious == {a}
    assert result.sessions_started == 2
    for task, sig in zip(tasks, result.signatures or (), strict=True):
        assert secp.schnorr_verify(task.msg, task.xonly_pk(key), sig)


def test_a_session_with_a_bad_signer_list_is_refused_and_the_presignature_survives() -> None:
    key, secshares = make_key(3, 5, seed=21)
    tasks = make_tasks(key, 2)
    signers = [RoastSigner(key, i, secshares[i], tasks) for i in range(5)]
    p = [s.presign().pubnonces for s in signers]
    bad = [
        SessionRequest(0, (0, 99, 1), (p[0], p[1], p[1])),  # id out of range (an IndexError before)
        SessionRequest(0, (0, -1, 1), (p[0], p[1], p[1])),
        SessionRequest(0, (0, 0, 1), (p[0], p[0], p[1])),  # repeated id
        SessionRequest(0, (0, 1), (p[0], p[1])),  # fewer than t
        SessionRequest(0, (0, 1, 2, 3, 4, 1), (p[0], p[1], p[2], p[3], p[4], p[1])),  # more than n
        SessionRequest(0, (0, 1, 2), (p[0], p[1])),  # a presignature short
        SessionRequest(0, (0, 1, 2), (p[0], p[1], p[2][:1])),  # a pubnonce short
        SessionRequest(0, (0, 1, 2), (p[0], (b"\x02" + b"\xff" * 65, p[1][1]), p[2])),  # not points
        SessionRequest(0, (0, True, 2), (p[0], p[1], p[2])),  # type: ignore[arg-type]
        SessionRequest(-1, (0, 1, 2), (p[0], p[1], p[2])),
        SessionRequest(0, (1, 2, 3), (p[1], p[2], p[3])),  # without this signer
    ]
    for request in bad:
        with pytest.raises(ValueError):
            signers[0].check_session(request)
        with pytest.raises(ValueError):
            signers[0].on_session(request)
    # nothing was spent: the same presignature still signs a proper session
    good = SessionRequest(0, (0, 1, 2), (p[0], p[1], p[2]))
    signers[0].check_session(good)
    reply = signers[0].on_session(good)
    assert len(reply.psigs) == len(tasks)


@pytest.mark.parametrize(("t", "n"), [(3, 5), (7, 10)])
def test_signers_given_only_the_aggregate_nonces_sign_and_cheaters_are_still_named(t: int, n: int) -> None:
    for f in range(n - t + 1):
        rng = random.Random(f"aggregate-{t}-{n}-{f}")
        faulty = sorted(rng.sample(range(n), f))
        crashed, malicious = set(faulty[0::2]), set(faulty[1::2])
        result, seen_bad, tasks, key = simulate(t, n, crashed, malicious, set(), rng.randrange(2**32), aggregate=True)
        check_success(result, tasks, key, t, n)
        assert result.malicious == seen_bad  # the coordinator kept the individual nonces: it still blames


def test_a_session_of_aggregate_nonces_is_checked_before_signing_and_signs_once() -> None:
    key, secshares = make_key(3, 5, 11)
    tasks = make_tasks(key, 2)
    signers = [RoastSigner(key, i, secshares[i], tasks) for i in range(5)]
    pres = [s.presign() for s in signers]
    request = SessionRequest(0, (0, 2, 4), tuple(pres[i].pubnonces for i in (0, 2, 4)))
    good = request.signer_session()
    assert len(good.aggnonces) == 2 and all(len(a) == 66 for a in good.aggnonces)
    not_a_point = b"\x02" + b"\xff" * 32
    bad = [
        SignerSession(0, (0, 2, 4), good.aggnonces[:1]),  # one aggregate nonce for two tasks
        SignerSession(0, (0, 2, 4), (good.aggnonces[0], not_a_point * 2)),
        SignerSession(0, (0, 2, 4), (good.aggnonces[0], good.aggnonces[1][:65])),
        SignerSession(0, (1, 2, 4), good.aggnonces),  # signer 0 is not in it
        SignerSession(0, (0, 2), good.aggnonces),  # fewer than t
        SignerSession(-1, (0, 2, 4), good.aggnonces),
    ]
    for session in bad:
        with pytest.raises(ValueError):
            signers[0].on_session(session)
    replies = {i: signers[i].on_session(good) for i in (0, 2, 4)}  # the presignatures survived the refusals
    coordinator = RoastCoordinator(key, tasks)
    for i in (0, 2, 4):
        coordinator.receive_presignature(pres[i])
    for i in (0, 2, 4):
        coordinator.receive_reply(replies[i])
    check_success(coordinator.result, tasks, key, 3, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already signed"):
        signers[0].on_session(good)
    infinity = SignerSession(1, (0, 2, 4), (bytes(33) + good.aggnonces[0][33:], good.aggnonces[1]))
    signers[0].check_session(infinity)  # a half at infinity is a valid aggregate (BIP 445)


# -- the grace period ------------------------------------------------------------------------------


def grace_run(grace: float) -> tuple[RoastCoordinator, list[RoastSigner], SessionRequest]:
    """3-of-5, everyone up: the first session {0, 1, 2} starts at 0.0, the other two are ready at 0.01."""
    key, secshares = make_key(3, 5, seed=21)
    tasks = make_tasks(key, 2)
    coordinator = RoastCoordinator(key, tasks, grace=grace)
    signers = [RoastSigner(key, i, secshares[i], tasks) for i in range(5)]
    sends = []
    for i in range(3):
        sends += coordinator.receive_presignature(signers[i].presign(), now=0.0)
    assert {s.to for s in sends} == {0, 1, 2}
    for i in (3, 4):
        assert coordinator.receive_presignature(signers[i].presign(), now=0.01) == []
    return coordinator, signers, sends[0].request


def test_grace_all_up_signs_with_one_session_where_plain_roast_starts_two() -> None:
    for grace, expected in ((0.25, 1), (0.0, 2)):
        coordinator, signers, request = grace_run(grace)
        second = coordinator.receive_reply(signers[0].on_session(request), now=0.1)  # 3, 4, 0 are ready
        if grace:
            assert second == [] and coordinator.wake_at == pytest.approx(0.25)
        else:  # plain ROAST, as before the grace: a second session at once, and no timer
            assert {s.to for s in second} == {3, 4, 0} and coordinator.wake_at is None
        for k, i in enumerate((1, 2)):
            coordinator.receive_reply(signers[i].on_session(request), now=0.15 + 0.05 * k)
        result = coordinator.result
        assert result is not None and result.ok and result.signer_ids == (0, 1, 2)
        assert result.sessions_started == expected and coordinator.wake_at is None


def test_grace_a_member_that_never_answers_delays_the_next_session_by_the_grace_only() -> None:
    coordinator, signers, request = grace_run(0.25)
    assert coordinator.receive_reply(signers[0].on_session(request), now=0.1) == []
    assert coordinator.receive_reply(signers[1].on_session(request), now=0.15) == []  # 2 never answers
    assert coordinator.wake_at == pytest.approx(0.25)
    assert coordinator.tick(0.2) == []  # not yet
    sends = coordinator.tick(0.25)
    assert {s.to for s in sends} == {3, 4, 0} and coordinator.sessions_started == 2
    assert coordinator.wake_at is None  # 1 alone is ready: nothing waits
    new_request = sends[0].request
    for k, i in enumerate(new_request.signer_ids):
        coordinator.receive_reply(signers[i].on_session(new_request), now=0.3 + 0.01 * k)
    result = coordinator.result
    assert result is not None and result.ok and set(result.signer_ids) == {3, 4, 0}
    assert result.sessions_started == 2 and result.malicious == frozenset()
    for task, sig in zip(coordinator.tasks, result.signatures or (), strict=True):
        assert secp.schnorr_verify(task.msg, task.xonly_pk(coordinator.key), sig)


def test_grace_a_malicious_share_starts_the_next_session_at_once() -> None:
    coordinator, signers, request = grace_run(0.25)
    assert coordinator.receive_reply(signers[0].on_session(request), now=0.1) == []  # held by the grace
    reply = signers[1].on_session(request)
    bad = secp.bytes_from_int((secp.int_from_bytes(reply.psigs[0]) + 1) % secp.N)
    sends = coordinator.receive_reply(SignerReply(reply.sid, 1, (bad, reply.psigs[1]), reply.next_pubnonces), 0.11)
    assert coordinator.malicious == {1}
    assert {s.to for s in sends} == {3, 4, 0}  # at 0.11, not at the end of the grace
    new_request = sends[0].request
    for i in new_request.signer_ids:
        coordinator.receive_reply(signers[i].on_session(new_request), now=0.12)
    result = coordinator.result
    assert result is not None and result.ok and result.malicious == {1} and result.sessions_started == 2


@pytest.mark.parametrize(("t", "n"), SETUPS)
def test_roast_with_a_grace_still_succeeds_with_up_to_n_minus_t_faulty_signers(t: int, n: int) -> None:
    """A grace of about one round trip (a hop takes 1..10 here), so that sessions are held back."""
    tick_starts: list[float] = []
    for kind in ("crashed", "malicious", "slow", "mixed"):
        rng = random.Random(f"{t}-{n}-{kind}-grace")
        faulty = set(rng.sample(range(n), n - t))
        crashed = faulty if kind == "crashed" else set()
        malicious = faulty if kind == "malicious" else set()
        slow = faulty if kind == "slow" else set()
        if kind == "mixed":
            parts = sorted(faulty)
            crashed, malicious, slow = set(parts[0::3]), set(parts[1::3]), set(parts[2::3])
        for seed in range(3):
            result, seen_bad, tasks, key = simulate(
                t, n, crashed, malicious, slow, seed=n * 7 + t + seed, grace=15.0, tick_starts=tick_starts
            )
            check_success(result, tasks, key, t, n)
            assert result.malicious == seen_bad and result.malicious <= malicious
    assert tick_starts  # the grace did hold sessions back, and the ticks started them


def test_a_negative_grace_is_refused() -> None:
    key, _ = make_key(2, 3, seed=22)
    with pytest.raises(ValueError):
        RoastCoordinator(key, make_tasks(key, 1), grace=-0.1)

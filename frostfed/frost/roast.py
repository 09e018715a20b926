"""ROAST (Ruffing et al., CCS 2022) over BIP 445: robust asynchronous threshold signing.

A plain FROST session stalls if one of its t signers crashes and aborts if one cheats. ROAST wraps
it: the coordinator keeps a `ready` set of signers holding an unused presignature (a pubnonce made
ahead with `nonce_gen_preprocess`) and a `malicious` set. As soon as t signers are ready it starts a
session with them; every reply carries the partial signature(s) and the signer's next presignature,
which makes the signer ready again. A partial signature that fails BIP 445 verification marks its
sender malicious forever. With at most n - t faulty signers (crashed, slow or malicious) this ends
with a valid signature after at most n - t + 1 sessions, without any timeout.

One run signs several messages at once (all inputs of a transaction): every presignature and reply
holds one pubnonce / partial signature per `SigningTask`, each task with its own tweaks.

Both sides are sans-I/O state machines: they take messages and return messages; the federation layer
moves them over the network and decides when to give up (`RoastCoordinator.give_up`). Time enters
the coordinator only as an input (`now`, and `tick` at `wake_at`), for its grace period.

    key = ThresholdKey(n, t, thresh_pk, pubshares)
    tasks = [SigningTask(sighash, tuple(tweaks), tuple(is_xonly)) for each input]
    coordinator = RoastCoordinator(key, tasks)           # on the coordinating member
    signer = RoastSigner(key, my_id, secshare, tasks)    # on every member, after its own policy check
    send signer.presign() to the coordinator
    coordinator:  for send in coordinator.receive_presignature(pre) / receive_reply(reply):
                      deliver send.request to member send.to
    member:       reply = signer.on_session(request); deliver reply to the coordinator
    coordinator.result (RoastResult) is set when done; result.signatures[j] signs tasks[j].

Secret nonces exist only inside a RoastSigner and are erased when used; after a crash they are
simply gone (a restarted signer makes a new presignature), so a nonce is never used twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from frostfed.frost import secp
from frostfed.frost.errors import InvalidContributionError
from frostfed.frost.signer_sets import SignerSets, signer_sets
from frostfed.frost.signing import (
    SessionContext,
    SignersContext,
    nonce_agg,
    nonce_gen_preprocess,
    partial_sig_agg,
    partial_sig_verify,
    pubshare_from_secshare,
    session_xonly_pk,
    sign,
)


class ThresholdKey(NamedTuple):
    """The public key material of a t-of-n federation: `pubshares[id]` for ids 0..n-1."""

    n: int
    t: int
    thresh_pk: bytes
    pubshares: tuple[bytes, ...]

    def signers_ctx(self, ids: Sequence[int]) -> SignersContext:
        return SignersContext(self.n, self.t, list(ids), [self.pubshares[i] for i in ids], self.thresh_pk)

    def sets(self) -> SignerSets:
        """This key's validated signer contexts, one per signer set, shared in the process."""
        return signer_sets(self.n, self.t, self.thresh_pk, self.pubshares)


@dataclass(frozen=True)
class SigningTask:
    """One message to sign and the BIP 445 tweaks that take the threshold key to its signing key."""

    msg: bytes
    tweaks: tuple[bytes, ...] = ()
    is_xonly: tuple[bool, ...] = ()

    def xonly_pk(self, key: ThresholdKey) -> bytes:
        return session_xonly_pk(key.thresh_pk, self.tweaks, self.is_xonly)


@dataclass(frozen=True)
class Presignature:
    """A signer's first message: one pubnonce per task, for the first session it will join."""

    signer_id: int
    pubnonces: tuple[bytes, ...]


@dataclass(frozen=True)
class SessionRequest:
    """Coordinator -> each signer of session `sid`: who signs, and everyone's pubnonce per task.

    `pubnonces[k][j]` is the pubnonce of `signer_ids[k]` for task j.
    """

    sid: int
    signer_ids: tuple[int, ...]
    pubnonces: tuple[tuple[bytes, ...], ...]

    def signer_session(self) -> SignerSession:
        """What the signers need of this session: the aggregate nonce per task (see `SignerSession`)."""
        ntasks = len(self.pubnonces[0]) if self.pubnonces else 0
        aggnonces = tuple(nonce_agg([p[j] for p in self.pubnonces], self.signer_ids) for j in range(ntasks))
        return SignerSession(self.sid, self.signer_ids, aggnonces)


@dataclass(frozen=True)
class SignerSession:
    """Coordinator -> each signer of session `sid`: who signs, and the aggregate nonce per task.

    What BIP 445's Sign needs and no more: the signer set and `aggnonces[j]` = NonceAgg of the
    signers' pubnonces for task j (66 bytes each, a half of 33 zero bytes standing for infinity).
    Taking the aggregate nonce from the coordinator is safe. BIP 445 allows an untrusted aggregator
    ("a malicious aggregator can force the signing session to fail ... but cannot negatively affect
    the unforgeability of the scheme, i.e., even a malicious aggregator colluding with all but one
    signer cannot forge a signature"): in FROST3 the nonce coefficient b hashes the signer set, the
    aggregate nonce, the tweaked key and the message, and every other signer's pubnonce is the
    adversary's free choice anyway, so the aggregate is already fully in the hands of a coordinator
    colluding with one other signer; a signer that checks the individual nonces learns nothing that
    protects it. What must stay the signer's own is what it signs (message and tweaks: its own
    `SigningTask`s, from its own policy check) and the one-use rule of its secret nonce (one
    presignature, erased when used, journalled before the partial signature leaves). Identifying a
    bad partial signature needs the individual nonces; the coordinator, who verifies, keeps them. A
    wrong aggregate only makes the session fail, which the coordinator could do anyway.
    """

    sid: int
    signer_ids: tuple[int, ...]
    aggnonces: tuple[bytes, ...]


@dataclass(frozen=True)
class SignerReply:
    """Signer -> coordinator: a partial signature per task and the next presignature."""

    sid: int
    signer_id: int
    psigs: tuple[bytes, ...]
    next_pubnonces: tuple[bytes, ...]


@dataclass(frozen=True)
class Send:
    to: int
    request: SessionRequest


@dataclass(frozen=True)
class RoastResult:
    """The end of a run: `signatures` (one per task) on success, else None with the reason."""

    signatures: tuple[bytes, ...] | None
    malicious: frozenset[int]
    sessions_started: int
    signer_ids: tuple[int, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.signatures is not None


@dataclass
class _Session:
    signer_ids: tuple[int, ...]
    pubnonces: dict[int, tuple[bytes, ...]]
    psigs: dict[int, tuple[bytes, ...]] = field(default_factory=dict)


def _valid_aggnonce(aggnonce: object) -> bool:
    """Two points of 33 bytes each, either of which may be infinity (33 zero bytes), as NonceAgg gives."""
    if not isinstance(aggnonce, bytes) or len(aggnonce) != 66:
        return False
    try:
        secp.cpoint_ext(aggnonce[:33])
        secp.cpoint_ext(aggnonce[33:])
    except ValueError:
        return False
    return True


def _valid_pubnonce(pubnonce: object) -> bool:
    if not isinstance(pubnonce, bytes) or len(pubnonce) != 66:
        return False
    try:
        secp.cpoint(pubnonce[:33])
        secp.cpoint(pubnonce[33:])
    except ValueError:
        return False
    return True


class RoastCoordinator:
    """The ROAST coordinator: feed it presignatures and replies, send what it returns.

    `ready` holds the signers with an unused presignature, in arrival order; `malicious` those whose
    contribution failed verification (they are ignored from then on). `result` is set once, by
    success, by `malicious` growing past n - t (no honest quorum can remain), or by `give_up`.

    The grace period. With every member up, the replies of the first session make t signers ready
    again before its last reply arrives, and plain ROAST starts a second session whose partial
    signatures are thrown away when the first one completes a moment later. With `grace` > 0, a
    session that could start less than `grace` seconds after the previous start is held back until
    the grace ends (the driver calls `tick(now)` at `wake_at`), unless a signer is found malicious,
    which ends the hold at once, as a failed session started the next one at once before. `grace` 0
    is plain ROAST.

    Why robustness holds: the hold only delays, it never drops or reorders anything. Sessions are
    formed by the same rule from the same `ready` set (a held signer stays ready), and a hold ends at
    most `grace` after the start that armed it, so a session that plain ROAST would start at time T
    starts by T + `grace`. ROAST's bound counts sessions, not time: a session that never completes
    holds a signer that never answers (it never becomes ready again) or one marked malicious (it is
    ignored from then on), so at most n - t sessions fail and a run with at most n - t faulty signers
    ends after at most n - t + 1 sessions, as before; the grace adds at most `grace` per session.
    """

    def __init__(self, key: ThresholdKey, tasks: Sequence[SigningTask], grace: float = 0.0) -> None:
        if not tasks:
            raise ValueError("at least one signing task is needed")
        if not grace >= 0:
            raise ValueError("the grace period must be 0 or more seconds")
        if len(key.pubshares) != key.n or not 1 <= key.t <= key.n:
            raise ValueError("the threshold key must have n public shares and 1 <= t <= n")
        key.signers_ctx(range(key.n))  # shape check; validity is checked per session by BIP 445
        self.key = key
        self.sets = key.sets()
        self.tasks = tuple(tasks)
        for task in self.tasks:
            task.xonly_pk(key)  # refuse bad tweaks now, not in the middle of a run
        self.ready: dict[int, None] = {}  # ordered set
        self.malicious: set[int] = set()
        self.result: RoastResult | None = None
        self.sessions_started = 0
        self._presig: dict[int, tuple[bytes, ...]] = {}
        self._session_of: dict[int, int] = {}
        self._sessions: dict[int, _Session] = {}
        self.grace = float(grace)
        self._hold_until: float | None = None  # no session starts before this (`now` scale)

    # -- inputs ------------------------------------------------------------------------------------

    def receive_presignature(self, pre: Presignature, now: float = 0.0) -> list[Send]:
        """A signer's first presignature (arrived at time `now`). Duplicates and unknown senders are ignored."""
        i = pre.signer_id
        if self.result is not None or not self._known(i) or i in self.malicious:
            return []
        if i in self._presig or i in self._session_of:
            return []  # already holding one, or already signing: a repeated first message
        if not self._valid_pubnonces(pre.pubnonces):
            return self._mark_malicious(i, now)
        self._presig[i] = tuple(pre.pubnonces)
        self.ready[i] = None
        return self._maybe_start_session(now)

    def receive_reply(self, reply: SignerReply, now: float = 0.0) -> list[Send]:
        """A signer's reply to session `reply.sid` (arrived at time `now`); stale or repeated replies are ignored."""
        i = reply.signer_id
        if self.result is not None or not self._known(i) or i in self.malicious:
            return []
        if self._session_of.get(i) != reply.sid:
            return []
        session = self._sessions[reply.sid]
        del self._session_of[i]
        if not self._reply_is_valid(session, i, reply):
            return self._mark_malicious(i, now)
        session.psigs[i] = tuple(reply.psigs)
        self._presig[i] = tuple(reply.next_pubnonces)
        self.ready[i] = None
        if len(session.psigs) == len(session.signer_ids):
            self._finish(reply.sid, session)
            return []
        return self._maybe_start_session(now)

    @property
    def wake_at(self) -> float | None:
        """When the driver must call `tick`: a session is held back by the grace until then."""
        if self.result is not None or self._hold_until is None or len(self.ready) < self.key.t:
            return None
        return self._hold_until

    def tick(self, now: float) -> list[Send]:
        """The time is `now`: start the session the grace held back, if it has ended."""
        return self._maybe_start_session(now)

    def give_up(self, reason: str = "timed out") -> RoastResult:
        """End the run without a signature (the caller's deadline passed)."""
        if self.result is None:
            self.result = RoastResult(None, frozenset(self.malicious), self.sessions_started, reason=reason)
        return self.result

    # -- internals ---------------------------------------------------------------------------------

    def _known(self, i: object) -> bool:
        return type(i) is int and 0 <= i < self.key.n

    def _valid_pubnonces(self, pubnonces: object) -> bool:
        return (
            isinstance(pubnonces, tuple | list)
            and len(pubnonces) == len(self.tasks)
            and all(_valid_pubnonce(p) for p in pubnonces)
        )

    def _reply_is_valid(self, session: _Session, i: int, reply: SignerReply) -> bool:
        if not self._valid_pubnonces(reply.next_pubnonces):
            return False
        if not isinstance(reply.psigs, tuple | list) or len(reply.psigs) != len(self.tasks):
            return False
        ids = session.signer_ids
        ctx = self.sets.context(ids)
        k = ids.index(i)
        for j, task in enumerate(self.tasks):
            nonces = [session.pubnonces[s][j] for s in ids]
            try:
                if not partial_sig_verify(reply.psigs[j], nonces, ctx, task.tweaks, task.is_xonly, task.msg, k):
                    return False
            except InvalidContributionError:  # cannot happen: nonces were checked on arrival
                return False
        return True

    def _mark_malicious(self, i: int, now: float) -> list[Send]:
        self.malicious.add(i)
        self._hold_until = None  # a session failed: the next one starts now, as in plain ROAST
        self.ready.pop(i, None)
        self._presig.pop(i, None)
        if len(self.malicious) > self.key.n - self.key.t:
            self.result = RoastResult(
                None,
                frozenset(self.malicious),
                self.sessions_started,
                reason="more than n - t signers are malicious",
            )
            return []
        return self._maybe_start_session(now)

    def _maybe_start_session(self, now: float) -> list[Send]:
        if self.result is not None or len(self.ready) < self.key.t:
            return []
        if self._hold_until is not None and now < self._hold_until:
            return []  # held back by the grace; `wake_at` tells the driver when to `tick`
        self._hold_until = now + self.grace if self.grace > 0 else None
        chosen = list(self.ready)[: self.key.t]
        for i in chosen:
            del self.ready[i]
        sid = self.sessions_started
        self.sessions_started += 1
        signer_ids = tuple(chosen)
        pubnonces = {i: self._presig.pop(i) for i in signer_ids}
        self._sessions[sid] = _Session(signer_ids, pubnonces)
        for i in signer_ids:
            self._session_of[i] = sid
        request = SessionRequest(sid, signer_ids, tuple(pubnonces[i] for i in signer_ids))
        return [Send(i, request) for i in signer_ids]

    def _finish(self, sid: int, session: _Session) -> None:
        ids = session.signer_ids
        ctx = self.sets.context(ids)
        sigs = []
        for j, task in enumerate(self.tasks):
            nonces = [session.pubnonces[s][j] for s in ids]
            sctx = SessionContext(ctx, nonce_agg(nonces, ids), task.tweaks, task.is_xonly, task.msg)
            sig = partial_sig_agg([session.psigs[s][j] for s in ids], ids, sctx)
            if not secp.schnorr_verify(task.msg, task.xonly_pk(self.key), sig):
                # Unreachable when every partial signature verified; never hand out a bad signature.
                self.result = RoastResult(
                    None, frozenset(self.malicious), self.sessions_started, ids, "aggregate signature invalid"
                )
                return
            sigs.append(sig)
        self.result = RoastResult(tuple(sigs), frozenset(self.malicious), self.sessions_started, ids)


class RoastSigner:
    """One signer's side of ROAST: it keeps exactly one unused presignature and signs with it once.

    The secret nonces never leave this object; each is erased by `sign` when used, and a request
    that does not carry this signer's current presignature is refused, so a nonce is never reused.
    """

    def __init__(self, key: ThresholdKey, my_id: int, secshare: bytes, tasks: Sequence[SigningTask]) -> None:
        if not 0 <= my_id < key.n:
            raise ValueError("my_id is not a participant of this key")
        if pubshare_from_secshare(secshare) != key.pubshares[my_id]:
            raise ValueError("the secret share does not match this participant's public share")
        self.key = key
        self.sets = key.sets()  # outlives this signer: the next request's sessions find their sets built
        self.my_id = my_id
        self._secshare = secshare
        self.tasks = tuple(tasks)
        self._secnonces: list[bytearray] | None = None
        self._pubnonces: tuple[bytes, ...] = ()
        self._counter = 0
        self._signed_sids: set[int] = set()

    def _new_presignature(self) -> tuple[bytes, ...]:
        secnonces, pubnonces = [], []
        for j in range(len(self.tasks)):
            self._counter += 1
            extra = b"roast" + self._counter.to_bytes(8, "big") + j.to_bytes(4, "big")
            sec, pub = nonce_gen_preprocess(self._secshare, self.key.pubshares[self.my_id], None, extra)
            secnonces.append(sec)
            pubnonces.append(pub)
        self._secnonces = secnonces
        self._pubnonces = tuple(pubnonces)
        return self._pubnonces

    def presign(self) -> Presignature:
        """The first presignature (call once per run)."""
        if self._secnonces is not None:
            raise ValueError("this signer already has an outstanding presignature")
        return Presignature(self.my_id, self._new_presignature())

    def check_session(self, request: SessionRequest | SignerSession) -> None:
        """Raise ValueError unless `request` is a session this signer can sign: every field comes from
        the coordinator, so each is checked before anything (the nonce journal included) is touched.
        A `SessionRequest` carries every signer's pubnonces (this signer's current presignature must be
        among them); a `SignerSession` only the aggregate nonces (see there why that is safe)."""
        n, t = self.key.n, self.key.t
        if type(request.sid) is not int or request.sid < 0:
            raise ValueError("the session id is not a whole number")
        if request.sid in self._signed_sids:
            raise ValueError(f"session {request.sid} was already signed")
        ids = request.signer_ids
        if not isinstance(ids, tuple | list) or not all(type(i) is int for i in ids):
            raise ValueError("the signer ids are not whole numbers")
        if not all(0 <= i < n for i in ids):
            raise ValueError(f"a signer id is outside 0..{n - 1}")
        if len(set(ids)) != len(ids):
            raise ValueError("a signer id is repeated")
        if not t <= len(ids) <= n:
            raise ValueError(f"the session names {len(ids)} signers; {t}..{n} are needed")
        if self.my_id not in ids:
            raise ValueError("this signer is not part of the session")
        if isinstance(request, SignerSession):
            aggnonces = request.aggnonces
            if not isinstance(aggnonces, tuple | list) or len(aggnonces) != len(self.tasks):
                raise ValueError("the session must carry one aggregate nonce per task")
            if not all(_valid_aggnonce(a) for a in aggnonces):
                raise ValueError("an aggregate nonce of the session is not a pair of curve points")
            if self._secnonces is None:
                raise ValueError("this signer holds no unused presignature")
            return
        if not isinstance(request.pubnonces, tuple | list) or len(request.pubnonces) != len(ids):
            raise ValueError("the session must carry one presignature per signer")
        for p in request.pubnonces:
            if not isinstance(p, tuple | list) or len(p) != len(self.tasks):
                raise ValueError("the session must carry one pubnonce per task for each signer")
            if not all(_valid_pubnonce(x) for x in p):
                raise ValueError("a pubnonce of the session is not a pair of curve points")
        k = list(ids).index(self.my_id)
        if self._secnonces is None or tuple(request.pubnonces[k]) != self._pubnonces:
            raise ValueError("the session does not carry this signer's current presignature")

    def on_session(self, request: SessionRequest | SignerSession) -> SignerReply:
        """Sign every task with the current presignature and hand out the next one."""
        self.check_session(request)
        assert self._secnonces is not None
        session = request if isinstance(request, SignerSession) else request.signer_session()
        ctx = self.sets.context(session.signer_ids)
        secnonces, self._secnonces = self._secnonces, None  # spent, whatever happens next
        psigs = []
        for j, task in enumerate(self.tasks):
            session_ctx = SessionContext(ctx, bytes(session.aggnonces[j]), task.tweaks, task.is_xonly, task.msg)
            psigs.append(sign(secnonces[j], self._secshare, self.my_id, session_ctx))
        self._signed_sids.add(request.sid)
        return SignerReply(request.sid, self.my_id, tuple(psigs), self._new_presignature())

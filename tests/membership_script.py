"""A scripted federation for the membership machine's unit tests: member ids, the current epoch's keys,
real ChillDKG results for the proposed member lists (run in process, once), and small helpers that
read the machine's effects."""

from __future__ import annotations

import functools
import hashlib
import os
import random
from typing import Any

from coincurve import PrivateKey
from dealer import trusted_dealer

from frostfed.federation.change_judgement import OperatorDecisions
from frostfed.federation.config import MembershipSettings, default_threshold
from frostfed.federation.dkg_run import DkgResult, DkgRun
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.machine import Machine, Seat
from frostfed.federation.membership.record import ChangeRecord
from frostfed.federation.messages import Message
from frostfed.federation.transition import Proposal

IDS = [PrivateKey(hashlib.sha256(f"machine member {i}".encode()).digest()).public_key.format() for i in range(5)]
JOINER = IDS[4]
SETTINGS = MembershipSettings(change_timeout_seconds=10, transition_confirmations=1, min_change_interval_blocks=6)
TIP = 500
OLD = trusted_dealer(3, 4, seed=11)


def keys(n: int = 4) -> EpochKeys:
    """Epoch 0 of the first `n` members."""
    t = 3
    return EpochKeys(0, IDS[:n], t, OLD.thresh_pk, b"\x02" * 32, OLD.pubshares, "regtest")


def machine(me: bytes, records: list[ChangeRecord] | None = None, joiner: bool = False, now: float = 0.0) -> Machine:
    seat = Seat(None, dict, frozenset(IDS[:4])) if joiner else Seat(keys(), dict, frozenset(IDS))
    return Machine(me, SETTINGS, list(records or []), seat, now)


def addresses(members: list[bytes]) -> dict[bytes, str]:
    return {m: f"127.0.0.1:{9000 + IDS.index(m)}" for m in members}


def leave(who: bytes = IDS[3], proposer: bytes | None = None, nonce: str = "aa" * 8) -> Proposal:
    members = [m for m in IDS[:4] if m != who]
    return Proposal(1, "leave", members, default_threshold(3), addresses(members), proposer or who, who, nonce=nonce)


def expel(who: bytes = IDS[3], proposer: bytes = IDS[1], nonce: str = "bb" * 8) -> Proposal:
    members = [m for m in IDS[:4] if m != who]
    return Proposal(1, "expel", members, default_threshold(3), addresses(members), proposer, who, nonce=nonce)


def join(proposer: bytes = IDS[1], nonce: str = "cc" * 8) -> Proposal:
    members = [*IDS[:4], JOINER]
    return Proposal(
        1, "join", members, default_threshold(5), addresses(members), proposer, JOINER, 200_000, TIP + 1000, nonce
    )


@functools.cache
def dkg(members: tuple[bytes, ...], t: int) -> dict[bytes, DkgResult]:
    """Every member's result of one ChillDKG among `members` (epoch 1)."""
    rng = random.Random(5)
    seeds = {m: rng.randbytes(32) for m in members}
    runs = {m: DkgRun(1, 1, list(members), t, m, seeds[m]) for m in members}
    queue = [(me, s, p) for me, r in runs.items() for s, p in r.start()]
    while queue:
        sender, session, payload = queue.pop(0)
        for run in runs.values():
            queue += [(run.me, s, p) for s, p in run.on_delivered(session, sender, payload)]
    return {m: r.result for m, r in runs.items() if r.result is not None}


def results(p: Proposal) -> dict[bytes, DkgResult]:
    return dkg(tuple(p.members), p.threshold)


def approve(*expelled: bytes) -> OperatorDecisions:
    return OperatorDecisions({JOINER: 0}, frozenset(expelled))


def judged(m: Machine, p: Proposal, peer: bytes, proposing: bool = False, decisions=None, now: float = 1.0) -> list:
    return m.judged(p, peer, proposing, TIP, now, {}, decisions or approve(p.subject), ("ab" * 32, 0))


def msg(kind: str, **body: Any) -> Message:
    return Message(kind, body)


def sends(effects: list, kind: str | None = None) -> list[fx.Send]:
    return [e for e in effects if isinstance(e, fx.Send) and (kind is None or e.kind == kind)]


def only(effects: list, typ: type) -> list:
    return [e for e in effects if isinstance(e, typ)]


def txid(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def random_txid() -> str:
    return os.urandom(32).hex()

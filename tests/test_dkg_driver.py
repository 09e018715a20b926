"""The DKG driver without a network: a scripted echo broadcast (every broadcast delivered to every member,
when the test says) and a scripted point-to-point network. Attempt numbering, `dkg_hello`, stalls,
failures and `epoch_recovery`, each read from the members' own stores and callbacks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey

from frostfed.federation.config import PolicySettings
from frostfed.federation.context import MemberContext, Timing
from frostfed.federation.dkg_driver import DkgDriver, echo_sid, epoch_record, seal_context
from frostfed.federation.dkg_run import DkgFailed, DkgResult, DkgRun
from frostfed.federation.messages import DkgHello, EpochRecovery, Kind, decode, encode
from frostfed.federation.sealing import Sealer
from frostfed.federation.store import Store
from frostfed.net.channel import PeerId


class ScriptedEcho:
    """The round echo broadcast's interface; broadcasts wait in `pending` until the test delivers them."""

    def __init__(self, net: Cluster, me: PeerId) -> None:
        self.net = net
        self.me = me
        self.open: set[bytes] = set()
        self.deliver: Any = None
        self.abort: Any = None

    def on_deliver(self, cb: Any) -> None:
        self.deliver = cb

    def on_abort(self, cb: Any) -> None:
        self.abort = cb

    def start_session(self, sid: bytes, members: list[PeerId]) -> None:
        self.open.add(sid)

    def close_session(self, sid: bytes) -> None:
        self.open.discard(sid)

    async def broadcast(self, sid: bytes, payload: bytes) -> None:
        self.net.pending.append((self.me, sid, payload))


class View:
    def note_epoch_start(self, epoch: int, tip: int | None = None) -> None:
        pass


@dataclass
class Cluster:
    tmp: Path
    n: int = 3
    t: int = 2
    pending: list[tuple[PeerId, bytes, bytes]] = field(default_factory=list)  # echo broadcasts
    mail: list[tuple[PeerId, PeerId, str, dict[str, Any]]] = field(default_factory=list)  # point to point
    done: dict[PeerId, list[tuple[int, DkgResult]]] = field(default_factory=dict)
    failed: dict[PeerId, list[str]] = field(default_factory=dict)
    now: float = 1000.0

    def __post_init__(self) -> None:
        self.ids = [PrivateKey().public_key.format() for _ in range(self.n)]
        self.tasks: set[asyncio.Task[Any]] = set()
        self.drivers = {m: self.driver(m) for m in self.ids}

    def driver(self, me: PeerId) -> DkgDriver:
        ctx = MemberContext(
            me=me,
            host_seckey=os.urandom(32),
            sealer=Sealer.from_seed(me[1:]),
            store=Store(self.tmp / f"{me.hex()[:8]}.sqlite"),
            chain=None,
            chain_view=View(),  # type: ignore[arg-type]
            ledger=None,
            network="regtest",
            policy=PolicySettings(),
            timing=Timing(dkg_timeout=60),
            send_raw=lambda to, kind, body: self._send(me, to, kind, body),
            spawn=self._spawn,
            online=lambda _: True,
            members=list(self.ids),
            threshold=self.t,
        )
        self.done[me], self.failed[me] = [], []

        def on_done(result: DkgResult, epoch: int) -> None:
            self.done[me].append((epoch, result))
            ctx.store.save_epoch(epoch_record(ctx, result, epoch, "active"))

        def on_failed(run: DkgRun, e: DkgFailed) -> None:
            self.failed[me].append(e.reason)

        return DkgDriver(ctx, ScriptedEcho(self, me), on_done, on_failed, clock=lambda: self.now)  # type: ignore[arg-type]

    async def _send(self, sender: PeerId, to: PeerId, kind: str, body: dict[str, Any]) -> None:
        self.mail.append((sender, to, str(kind), body))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def flush(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks))

    async def run_echo(self, withhold: tuple[PeerId, bytes] | None = None, rounds: int = 10) -> None:
        """Deliver pending broadcasts to every member (except session `withhold[1]` to member
        `withhold[0]`) until none is left."""
        for _ in range(rounds):
            await self.flush()
            batch, self.pending = self.pending, []
            if not batch:
                return
            for sender, sid, payload in batch:
                for m in self.ids:
                    d = self.drivers[m]
                    if sid in d.echo.open and (m, sid) != withhold:  # type: ignore[attr-defined]
                        d.on_broadcast(sid, sender, payload)

    async def post(self) -> None:
        """Deliver the point-to-point mail once (what it makes the drivers send waits for the next call)."""
        await self.flush()
        batch, self.mail = self.mail, []
        for sender, to, kind, body in batch:
            msg = decode(encode(kind, body))
            self.drivers[to].handlers[msg.kind](sender, msg)
        await self.flush()

    def start_all(self, attempt: int = 1) -> None:
        for d in self.drivers.values():
            d.start(0, self.ids, self.t, attempt)

    def close(self) -> None:
        for d in self.drivers.values():
            d.ctx.store.close()


def hellos(c: Cluster, sender: PeerId | None = None) -> list[tuple[PeerId, DkgHello]]:
    return [
        (to, DkgHello.decode(decode(encode(k, b))))
        for s, to, k, b in c.mail
        if k == Kind.DKG_HELLO and (sender is None or s == sender)
    ]


async def test_members_reach_one_key_and_record_the_attempt(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.start_all()
    await c.flush()
    assert sorted(to for to, _ in hellos(c, c.ids[0])) == sorted(c.ids[1:])
    await c.run_echo()
    keys = {m: [r.group_key for _, r in c.done[m]] for m in c.ids}
    assert all(len(k) == 1 for k in keys.values()) and len({k[0] for k in keys.values()}) == 1
    for d in c.drivers.values():
        assert d.run is None and d.error is None and d.ctx.store.get_meta("dkg_attempt:0") == "1"
        rec = d.ctx.store.epoch(0)
        assert rec is not None and d.ctx.sealer.open(rec.sealed_share or b"", seal_context(d.ctx, 0))
    c.close()


async def test_everyone_moves_to_the_highest_attempt_announced(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.start_all()
    a, _, late = c.ids
    await c.flush()
    c.mail.clear()
    c.drivers[late].start(0, c.ids, c.t, 5)  # it restarted and counts on from its store
    await c.post()  # its hello (attempt 5) reaches the others
    assert all(c.drivers[m].run.attempt == 5 for m in c.ids)  # type: ignore[union-attr]
    assert c.drivers[a].ctx.store.get_meta("dkg_attempt:0") == "5"
    assert c.drivers[a].attempts_seen[0] == 5
    c.pending = [p for p in c.pending if p[1] in c.drivers[a].echo.open]  # type: ignore[attr-defined]
    await c.run_echo()
    assert all(len(c.done[m]) == 1 for m in c.ids)
    c.close()


async def test_a_member_behind_is_told_the_current_attempt(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    for m in c.ids:
        c.drivers[m].start(0, c.ids, c.t, 3)
    await c.flush()
    c.mail.clear()
    behind = c.ids[2]
    c.drivers[c.ids[0]].handlers[Kind.DKG_HELLO](behind, decode(DkgHello(0, 1).encode()))
    await c.flush()
    assert [(to, h.attempt) for to, h in hellos(c)] == [(behind, 3)]
    assert c.drivers[c.ids[0]].run.attempt == 3  # type: ignore[union-attr]
    stranger = PrivateKey().public_key.format()
    c.drivers[c.ids[0]].handlers[Kind.DKG_HELLO](stranger, decode(DkgHello(0, 9).encode()))
    assert c.drivers[c.ids[0]].run.attempt == 3  # type: ignore[union-attr]  # not a member of the run
    c.close()


async def test_a_stalled_attempt_gives_way_to_the_next(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.start_all()
    d = c.drivers[c.ids[0]]
    d.tick(c.now + 59)
    assert d.run is not None and d.run.attempt == 1
    d.tick(c.now + 61)
    assert d.run is not None and d.run.attempt == 2 and d.ctx.store.get_meta("dkg_attempt:0") == "2"
    c.close()


async def test_a_failed_attempt_is_reported_and_the_next_starts(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.start_all()
    await c.flush()
    bad = c.ids[1]
    c.pending = [(s, sid, b"\x05" * 33 if s == bad else p) for s, sid, p in c.pending]  # not a point
    await c.run_echo(rounds=1)
    for m in c.ids:
        d = c.drivers[m]
        assert c.failed[m] == ["malformed host public key"]
        assert d.error is not None and bad.hex() in d.error
        assert d.run is not None and d.run.attempt == 2
    c.close()


async def test_a_member_that_missed_the_end_recovers_from_the_others_data(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.start_all()
    a, _, missed = c.ids
    run = c.drivers[missed].run
    assert run is not None
    await c.run_echo(withhold=(missed, echo_sid(run.session("r2"))))  # it misses the last round
    assert c.done[missed] == [] and len(c.done[a]) == 1 and c.drivers[missed].run is run
    c.mail.clear()
    c.drivers[a].handlers[Kind.DKG_HELLO](missed, decode(DkgHello(0, 1).encode()))  # it says where it is
    await c.post()
    (epoch, result), = c.done[missed]
    assert epoch == 0 and result.group_key == c.done[a][0][1].group_key
    assert c.drivers[missed].run is None
    c.close()


@pytest.mark.parametrize("source", ["another federation", "garbage"])
async def test_recovery_data_of_another_dkg_is_refused(tmp_path: Path, source: str) -> None:
    other = Cluster(tmp_path / "other")
    other.start_all()
    await other.run_echo()
    recovery = other.done[other.ids[0]][0][1].recovery if source == "another federation" else b"\x00" * 40
    c = Cluster(tmp_path)
    c.start_all()
    c.drivers[c.ids[2]].handlers[Kind.EPOCH_RECOVERY](c.ids[0], decode(EpochRecovery(0, recovery).encode()))
    assert c.done[c.ids[2]] == [] and c.drivers[c.ids[2]].run is not None
    c.close()
    other.close()

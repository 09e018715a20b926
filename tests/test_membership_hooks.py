"""The membership driver on a member's context and the hooks it is handed, with no `Member` around it:
its messages leave through the context, its DKG runs on the DKG driver it was given, and an activation
goes through the member's `activate` hook (or, when this member leaves, clears the context's epoch)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from coincurve import PrivateKey
from dealer import trusted_dealer

from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.context import MemberContext, Timing
from frostfed.federation.dkg_driver import DkgDriver
from frostfed.federation.membership import Membership
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.host import Hooks
from frostfed.federation.membership.record import ChangeRecord, State
from frostfed.federation.messages import ChangeAck, Kind
from frostfed.federation.sealing import Sealer
from frostfed.federation.store import EpochRecord, Store
from frostfed.federation.transition import Proposal

IDS = [PrivateKey(bytes([i + 1]) * 32).public_key.format() for i in range(4)]
ME = IDS[0]


class Echo:
    """The round echo broadcast's interface; nothing is delivered (the DKG only starts here)."""

    def __init__(self) -> None:
        self.open: set[bytes] = set()

    def on_deliver(self, cb: Any) -> None: ...

    def on_abort(self, cb: Any) -> None: ...

    def start_session(self, sid: bytes, members: list[bytes]) -> None:
        self.open.add(sid)

    def close_session(self, sid: bytes) -> None:
        self.open.discard(sid)

    async def broadcast(self, sid: bytes, payload: bytes) -> None: ...


class View:
    def note_epoch_start(self, epoch: int, tip: int | None = None) -> None: ...


class Parts:
    def __init__(self, tmp: Path) -> None:
        self.mail: list[tuple[bytes, str, dict[str, Any]]] = []
        self.activated: list[EpochRecord] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ctx = MemberContext(
            me=ME,
            host_seckey=os.urandom(32),
            sealer=Sealer.from_seed(b"\x01" * 32),
            store=Store(tmp / "m.sqlite"),
            chain=None,
            chain_view=View(),  # type: ignore[arg-type]
            ledger=None,
            network="regtest",
            policy=PolicySettings(),
            timing=Timing(),
            send_raw=self.send,
            spawn=self.spawn,
            online=lambda _: True,
            members=list(IDS),
            threshold=3,
        )
        self.dkg = DkgDriver(self.ctx, Echo(), lambda result, epoch: None)  # type: ignore[arg-type]
        hooks = Hooks(
            dkg=self.dkg,
            activate=self.activated.append,
            request_signatures=self.no_signing,
            no_answer=lambda wait: "no answer in time",
            rpc=None,
            started=time.time(),
        )
        self.membership = Membership(self.ctx, hooks, MembershipSettings(), {}, None, None)

    async def send(self, peer: bytes, kind: str, body: dict[str, Any]) -> None:
        self.mail.append((peer, str(kind), body))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def no_signing(self, req: Any, extra: Any = None) -> dict[str, Any]:
        raise AssertionError("nothing is signed here")

    async def carry_out(self, effects: list[fx.Effect]) -> None:
        for coro in self.membership._apply(effects):
            await coro
        while self.tasks:
            await asyncio.gather(*list(self.tasks))


def _proposal(kind: str = "expel", subject: bytes = IDS[3]) -> Proposal:
    members = [m for m in IDS if m != subject]
    return Proposal(1, kind, members, 3, {m: f"127.0.0.1:{9000 + i}" for i, m in enumerate(members)}, IDS[1], subject)


def _epochs(parts: Parts, new_members: list[bytes]) -> None:
    """Epoch 0 active (this member's share), epoch 1 pending: what a change's DKG would have left."""
    sealer, store = parts.ctx.sealer, parts.ctx.store
    old, new = trusted_dealer(3, 4), trusted_dealer(3, len(new_members))
    seal0 = sealer.seal(old.secshares[0], b"frostfed/share/" + (0).to_bytes(4, "big") + ME)
    seal1 = sealer.seal(new.secshares[0], b"frostfed/share/" + (1).to_bytes(4, "big") + ME)
    store.save_epoch(EpochRecord(0, "active", IDS, 3, old.thresh_pk, b"\x02" * 32, old.pubshares, b"", seal0))
    store.save_epoch(
        EpochRecord(1, "pending", new_members, 3, new.thresh_pk, b"\x03" * 32, new.pubshares, b"", seal1)
    )


@pytest.mark.asyncio
async def test_messages_leave_through_the_context_and_the_dkg_runs_on_the_given_driver(tmp_path) -> None:
    parts = Parts(tmp_path)
    await parts.carry_out([fx.send(IDS[1], ChangeAck(1, False, "not approved"))])
    assert parts.mail == [(IDS[1], Kind.CHANGE_ACK, {"epoch": 1, "ok": False, "reason": "not approved"})]

    parts.ctx.store.set_meta("dkg_attempt:1", "2")
    parts.dkg.attempts_seen[1] = 5  # another member announced attempt 5: this one joins it
    await parts.carry_out([fx.StartDkg(1, IDS[:3], 3)])
    run = parts.dkg.run
    assert run is not None and (run.epoch, run.attempt, run.members) == (1, 5, IDS[:3])
    assert parts.ctx.store.get_meta("dkg_attempt:1") == "5"

    await parts.carry_out([fx.StopDkg(2)])  # another epoch's: this run goes on
    assert parts.dkg.run is run
    await parts.carry_out([fx.StopDkg(1)])
    assert parts.dkg.run is None
    parts.ctx.store.close()


@pytest.mark.asyncio
async def test_an_activation_goes_through_the_members_activate_hook(tmp_path) -> None:
    parts = Parts(tmp_path)
    _epochs(parts, IDS[:3])
    rec = ChangeRecord(_proposal(), State.ACTIVATED)
    rec.activation = {"txid": "ab" * 32, "judged": True, "height": 7, "time": time.time(), "left": False}
    await parts.carry_out([fx.Activate(rec)])
    store = parts.ctx.store
    active = store.active_epoch()
    assert active is not None and active.epoch == 1 and active.activation_txid == "ab" * 32
    assert parts.activated == [active]  # the member makes it its epoch (keys, share, members)
    old = store.epoch(0)
    assert old is not None and old.status == "retired" and old.sealed_share is not None  # kept until swept
    store.close()


@pytest.mark.asyncio
async def test_a_member_that_leaves_clears_its_epoch_without_activating_one(tmp_path) -> None:
    parts = Parts(tmp_path)
    _epochs(parts, IDS[1:])
    parts.ctx.keys = object()  # type: ignore[assignment]  # an active epoch, whatever its keys
    rec = ChangeRecord(_proposal("leave", ME), State.ACTIVATED)
    rec.activation = {"txid": "cd" * 32, "judged": True, "height": 7, "time": time.time(), "left": True}
    await parts.carry_out([fx.Activate(rec)])
    assert parts.activated == [] and parts.ctx.keys is None and parts.ctx.members == []
    [stored] = [ChangeRecord.from_json(row) for row in parts.ctx.store.changes()]  # written with the activation
    assert stored.epoch == 1 and (stored.activation or {}).get("left") is True
    old = parts.ctx.store.epoch(0)
    assert old is not None and old.status == "retired"
    parts.ctx.store.close()

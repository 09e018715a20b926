"""The membership machine's driver: it feeds the machine (messages, the DKG's end, heartbeats, the
operator) and carries out what the machine asks (effects.py) through the member's context and the
hooks it is handed (host.py): its messages, its store, its DKG, its chain and its bond wallet. The
decisions are the machine's; the I/O is here."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from coincurve import PrivateKey

from frostfed.federation.bond_wallet import BondWallet
from frostfed.federation.config import MembershipSettings
from frostfed.federation.context import MemberContext
from frostfed.federation.dkg_run import DkgResult
from frostfed.federation.membership import activation, sweep
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.executor import EffectRunner, MembershipError
from frostfed.federation.membership.host import Hooks
from frostfed.federation.membership.machine import Machine, Seat
from frostfed.federation.membership.record import ChangeRecord
from frostfed.federation.membership.transition_check import transition_tasks
from frostfed.federation.messages import Kind, Message, MessageError
from frostfed.federation.progress import Wait
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.transition import Proposal, ProposalRefused, make_proposal
from frostfed.frost import chilldkg
from frostfed.frost.roast import SigningTask

log = logging.getLogger(__name__)

PeerId = bytes
KINDS = (
    Kind.CHANGE_PROPOSAL,
    Kind.CHANGE_ACK,
    Kind.CHANGE_KEY,
    Kind.CHANGE_DONE,
    Kind.CHANGE_ABORT,
    Kind.BOND_REQUEST,
    Kind.BOND_OFFER,
    Kind.BOND_SIGN,
    Kind.BOND_SIGNED,
)


def _load(raw: list[str]) -> list[ChangeRecord]:
    out = []
    for r in raw:
        try:
            out.append(ChangeRecord.from_json(r))
        except (KeyError, TypeError, ValueError, MessageError) as e:
            log.warning("a membership change record cannot be read: %s", e)
    return out


class Membership(EffectRunner):
    def __init__(
        self,
        ctx: MemberContext,
        hooks: Hooks,
        settings: MembershipSettings,
        directory: dict[PeerId, str],
        bond_key: bytes | None,
        add_peer: Callable[[PeerId, str], None] | None,
        bond_wallet: BondWallet | None = None,
    ) -> None:
        self.ctx = ctx
        self.hooks = hooks
        self.settings = settings
        self.directory = {**directory, **ctx.store.directory()}
        self.bond_key = PrivateKey(bond_key) if bond_key else None
        self._add_peer = add_peer
        self.bond_wallet = bond_wallet
        self.offline = sweep.OfflineWatch(ctx, hooks.started)
        self.machine = Machine(ctx.me, settings, _load(ctx.store.changes()), Seat(), time.time())
        self.machine.silence = lambda w: hooks.no_answer(None if w is None else Wait(w.what, w.peers, w.since))
        self._lock = threading.RLock()  # the signer's check reaches the machine from a worker thread
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._considering: asyncio.Lock | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expelling: asyncio.Task[Any] | None = None
        self._expel_error: str | None = None
        self._hostkeys: tuple[int, dict[PeerId, bytes]] | None = None
        self.handlers: dict[str, Callable[[PeerId, Message], Any]] = {k: self._on_message for k in KINDS}

    # -- what the member and the commands read ---------------------------------------------------

    @property
    def clock(self) -> sweep.OfflineWatch:
        return self.offline

    @property
    def proposal(self) -> Proposal | None:
        rec = self.machine.current
        return rec.proposal if rec is not None else None

    @property
    def waiting(self) -> Wait | None:
        """The step of a change this member proposes that waits on other members (frost-status)."""
        w = self.machine.waiting()
        return None if w is None else Wait(w.what, w.peers, w.since)

    @property
    def last_error(self) -> str | None:
        return self.machine.last_error

    def extra_peers(self) -> set[PeerId]:
        """Peers beyond the current epoch whose messages are accepted: the members of a proposed epoch
        and, while this member is joining, the members it was told to contact."""
        self._seat()
        return self.machine.extra_peers()

    def known_hostkeys(self) -> dict[PeerId, bytes]:
        rec = self.ctx.store.active_epoch()
        if rec is None:
            return {}
        if self._hostkeys is None or self._hostkeys[0] != rec.epoch:
            _, params = chilldkg.coordinator_recover(rec.recovery)
            self._hostkeys = (rec.epoch, dict(zip(rec.members, params.hostpubkeys, strict=True)))
        return self._hostkeys[1]

    def approvals(self) -> dict[str, Any]:
        store = self.ctx.store
        return {
            "admitted": {k.hex(): v for k, v in store.approvals("join").items()},
            "admitted_by_config": sorted(k.hex() for k in self.settings.admit),
            "expel_approved": sorted(k.hex() for k in store.approvals("expel")),
        }

    def status(self) -> dict[str, Any]:
        rec = self.machine.current
        p = rec.proposal if rec is not None else None
        return {
            "in_progress": None
            if rec is None or p is None
            else {
                "epoch": p.epoch,
                "kind": p.kind,
                "subject": p.subject.hex(),
                "proposer": p.proposer.hex(),
                "members": len(p.members),
                "threshold": p.threshold,
                "state": rec.state.value,
                "transition_txid": rec.latest,
            },
            "last_error": self.machine.last_error,
        }

    def transition_txid(self, epoch: int) -> str | None:
        """The latest transition named for `epoch` (its activation txid once active)."""
        named = [r.latest for r in self.machine.records.values() if r.epoch == epoch and r.latest]
        return named[-1] if named else None

    def left_at_epoch(self) -> int | None:
        last = [r.epoch for r in self.machine.records.values() if (r.activation or {}).get("left")]
        return last[-1] if last else None

    def last_change_height(self) -> int | None:
        return (self.machine.last_activation() or {}).get("height")

    def bond(self) -> dict[str, Any] | None:
        """The fidelity bond this member paid when it joined, if any."""
        bonds = [r.bond for r in self.machine.records.values() if r.bond]
        return bonds[-1] if bonds else None

    # -- the machine's inputs --------------------------------------------------------------------

    def _seat(self) -> None:
        keys = self.ctx.keys
        self.machine.seat = Seat(keys, self.known_hostkeys, frozenset(self.directory))

    def _input(self, feed: Callable[[], list[fx.Effect]]) -> list[Coroutine[Any, Any, Any]]:
        """Feed the machine one input and carry out its effects: the store's in one transaction, the
        others at once or as awaitables for the caller."""
        with self._lock:
            self._seat()
            effects = feed()
            return self._apply(effects)

    def _on_message(self, peer: PeerId, msg: Message) -> Coroutine[Any, Any, Any] | None:
        pending = self._input(lambda: self.machine.receive(peer, msg, time.time()))
        return self._gather(pending) if pending else None

    async def receive(self, peer: PeerId, msg: Message) -> None:
        """A membership message, carried through to its last effect."""
        pending = self._on_message(peer, msg)
        if pending is not None:
            await pending

    async def _gather(self, pending: list[Coroutine[Any, Any, Any]]) -> None:
        for coro in pending:
            await coro

    def resume(self) -> None:
        """After a restart: the peers this member knows; the change in progress resumes from its record."""
        for peer, address in self.directory.items():
            self._learn_peer(peer, address)

    def on_dkg_done(self, result: DkgResult, epoch: int) -> None:
        self._spawn_all(self._input(lambda: self.machine.dkg_done(result, epoch, time.time())))

    def hint(self, peer: PeerId, epoch: int, txid: str) -> None:
        self._spawn_all(self._input(lambda: self.machine.hint(peer, epoch, txid, time.time())))

    def approved(self, rec: ChangeRecord, judged: list[tuple[str, int]], txid: str | None) -> bool:
        """The signer's check passed (in a worker thread): recorded before any partial signature."""
        with self._lock:
            if rec is not self.machine.current:
                return False
            self._input(lambda: self.machine.approved(rec, judged, txid, time.time()))
            return True

    def transition_tasks(self, req: SigningRequest) -> list[SigningTask]:
        return transition_tasks(self, req)

    async def tick(self) -> None:
        """A heartbeat: the offline clock, timeouts, the activation watcher, the sweep, an expulsion."""
        self.offline.watch()
        tip = self.ctx.chain_view.index.tip_height() if self.ctx.keys is not None else 0
        for coro in self._input(lambda: self.machine.tick(time.time(), max(tip, 0))):
            await coro
        if self.machine.current is None:
            self._maybe_expel()

    def save_clock(self) -> None:
        self.offline.save()

    # -- the operator's inputs -------------------------------------------------------------------

    async def propose(
        self,
        kind: str,
        subject: PeerId,
        address: str | None = None,
        bond_sats: int | None = None,
        bond_blocks: int | None = None,
        operator: bool = False,
    ) -> dict[str, Any]:
        """Propose a change; `operator`: this member's operator asked for it, which counts as its
        admission of the joiner or its approval of the expulsion."""
        ctx = self.ctx
        if self.machine.proposing:
            raise MembershipError("this member is already proposing a change")
        if operator and kind == "join" and subject not in ctx.store.approvals("join"):
            ctx.store.approve("join", subject)
        if operator and kind == "expel":
            ctx.store.approve("expel", subject)
        keys = ctx.keys
        if keys is None or ctx.chain is None:
            raise MembershipError("this member has no active epoch or no chain source")
        if self.hooks.rpc is None:
            raise MembershipError("this member has no bitcoind to find the federation's coins")
        if self.machine.current is not None:
            raise MembershipError(f"a change to epoch {self.machine.current.epoch} is already in progress")
        tip = await asyncio.to_thread(ctx.chain.tip_height)
        try:
            p = make_proposal(
                keys, self.directory, kind, subject, ctx.me, self.settings, tip, address, bond_sats, bond_blocks
            )
        except ProposalRefused as e:
            raise MembershipError(str(e)) from None
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[p.nonce] = fut
        try:
            for coro in self._input(lambda: self.machine.propose(p)):
                await coro
            return await fut
        finally:
            self._waiters.pop(p.nonce, None)
            if self.machine.run is None:
                self.machine.proposing = False

    def abort_change(self, reason: str | None = None) -> dict[str, Any]:
        """frost-abort-change: this member stops taking part in the change in progress (see Machine)."""
        with self._lock:
            rec, why, effects = self.machine.abort_change(reason, time.time())
            if rec is None:
                raise MembershipError("no membership change is in progress at this member")
            self._spawn_all(self._apply(effects))
        p = rec.proposal
        return {
            "aborted": {"epoch": p.epoch, "kind": p.kind, "subject": p.subject.hex(), "nonce": p.nonce},
            "reason": why,
        }

    def dropped_change_on_chain(self) -> tuple[ChangeRecord, str, int] | None:
        """A dropped change that took place all the same (see activation). Runs in a worker thread."""
        keys = self.ctx.keys
        if keys is None:
            return None
        return activation.dropped_change_on_chain(self.ctx, self.settings, self.machine.set_aside(keys.epoch + 1))

    def take_over(self, rec: ChangeRecord, txid: str, tip: int) -> None:
        self._input(lambda: self.machine.take_over(rec, txid, tip, time.time()))

    def sweep_check(self) -> None:
        sweep.sweep_check(self.ctx, self.machine)

    # -- peers and expulsion ---------------------------------------------------------------------

    def _learn_peer(self, peer: PeerId, address: str) -> None:
        if peer == self.ctx.me:
            return
        self.directory[peer] = address
        if self._add_peer is not None:
            try:
                self._add_peer(peer, address)
            except Exception as e:  # an unreachable address only delays that peer
                log.warning("cannot add peer %s at %s: %s", peer.hex()[:16], address, e)

    def _maybe_expel(self) -> None:
        ctx, keys = self.ctx, self.ctx.keys
        if keys is None or (self._expelling is not None and not self._expelling.done()):
            return
        online = {m: ctx.online(m) for m in keys.members}
        limit = self.settings.expel_after_seconds
        margin = ctx.timing.offline_after_seconds
        target = sweep.expel_candidate(keys.members, ctx.me, online, self.offline, limit, margin)
        if target is not None:
            self._expelling = ctx.spawn(self._expel_quietly(target, limit))

    async def _expel_quietly(self, target: PeerId, limit: float) -> None:
        try:
            await self.propose("expel", target)
        except MembershipError as e:
            if str(e) != self._expel_error:  # said once, not at every heartbeat
                log.warning("automatic expulsion of %s (offline > %.0f s) failed: %s", target.hex()[:16], limit, e)
            self._expel_error = str(e)
        else:
            self._expel_error = None

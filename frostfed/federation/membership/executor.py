"""How the driver carries out the machine's effects through the member's context and hooks: the
store's in one transaction, messages, the DKG, and the steps that wait (the judgement, the transition
built and signed, the joiner's bond, the activation watcher, the sweep)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from coincurve import PrivateKey

from frostfed.bitcoin.chain import ChainError
from frostfed.federation.bond_wallet import BondWallet, BondWalletError
from frostfed.federation.change_judgement import BAD_PROPOSAL, Decision, OperatorDecisions
from frostfed.federation.config import MembershipSettings
from frostfed.federation.context import MemberContext
from frostfed.federation.dkg_driver import epoch_record
from frostfed.federation.membership import activation, bond_exchange, sweep, transition_tx
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.admission import ask_admission_command
from frostfed.federation.membership.host import Hooks
from frostfed.federation.membership.machine import Machine
from frostfed.federation.membership.record import ChangeRecord, epoch_json, epoch_of
from frostfed.federation.messages import BondSign, BondSigned, ChangeAck, Kind, MessageError
from frostfed.federation.store import EpochRecord
from frostfed.federation.transition import Proposal

log = logging.getLogger(__name__)

PeerId = bytes


class MembershipError(Exception):
    """A membership change that could not be made; the message says why."""


async def _deliver(ctx: MemberContext, e: fx.Send) -> None:
    await ctx.send_raw(e.peer, e.kind, e.body)


class EffectRunner:
    ctx: MemberContext
    hooks: Hooks
    settings: MembershipSettings
    machine: Machine
    bond_key: PrivateKey | None
    bond_wallet: BondWallet | None
    directory: dict[PeerId, str]
    offline: sweep.OfflineWatch
    _lock: threading.RLock
    _waiters: dict[str, asyncio.Future[dict[str, Any]]]
    _considering: asyncio.Lock | None
    _timer: asyncio.TimerHandle | None

    def _learn_peer(self, peer: PeerId, address: str) -> None:
        raise NotImplementedError

    def _seat(self) -> None:
        raise NotImplementedError

    def _input(self, feed: Callable[[], list[fx.Effect]]) -> list[Coroutine[Any, Any, Any]]:
        raise NotImplementedError

    def _spawn_all(self, pending: list[Coroutine[Any, Any, Any]]) -> None:
        for coro in pending:
            self.ctx.spawn(coro)

    # -- carrying out effects --------------------------------------------------------------------

    def _apply(self, effects: list[fx.Effect]) -> list[Coroutine[Any, Any, Any]]:
        store = self.ctx.store
        pending: list[Coroutine[Any, Any, Any]] = []
        stored = (fx.Persist, fx.SaveShare, fx.SetAside, fx.RestoreShare, fx.Activate, fx.RecordRefusal)
        writes = [w for w in effects if isinstance(w, stored)]
        if writes:
            with store.transaction():  # a crash leaves the change's record and the epochs as one
                for w in writes:
                    self._store_effect(w)
        for e in effects:
            if isinstance(e, stored):
                if isinstance(e, fx.Activate):
                    self._activated(e.record)
                continue
            coro = self._effect(e)
            if coro is not None:
                pending.append(coro)
        self._schedule()
        return pending

    def _store_effect(self, e: fx.Effect) -> None:
        store = self.ctx.store
        if isinstance(e, fx.Persist):
            rec = e.record
            store.save_change(
                rec.proposal.proposer.hex(), rec.proposal.nonce, rec.epoch, rec.state.value, rec.to_json()
            )
        elif isinstance(e, fx.SaveShare):
            store.save_epoch(epoch_record(self.ctx, e.result, e.epoch, "pending"))
            log.info("epoch %d key ready: %s (active once the transition confirms)", e.epoch, e.result.group_key.hex())
        elif isinstance(e, fx.SetAside):
            share = store.epoch(e.record.epoch)
            if share is None or share.status != "pending":
                return
            if e.record.share_made:
                e.record.aside = epoch_json(share)
            elif e.delete and e.keep_foreign:  # another change's share: kept, never taken over on its own
                e.record.foreign_aside = epoch_json(share)
            else:
                return
            if e.delete:
                store.delete_epoch(e.record.epoch)
        elif isinstance(e, fx.RestoreShare):
            store.save_epoch(epoch_of(e.share))
        elif isinstance(e, fx.Activate):
            self._activate_in_store(e.record)
        elif isinstance(e, fx.RecordRefusal) and (e.stage != "proposal" or self.ctx.keys is not None):
            log.warning("membership change %s refused: %s", e.body.get("nonce"), e.reason)
            store.record_refusal(e.stage, e.body, e.code, e.reason)

    def _effect(self, e: fx.Effect) -> Coroutine[Any, Any, Any] | None:
        ctx, dkg = self.ctx, self.hooks.dkg
        if isinstance(e, fx.Send):
            return _deliver(ctx, e)
        if isinstance(e, fx.Judge):
            return self._judge(e.proposal, e.peer, e.proposing)
        if isinstance(e, fx.LearnPeers):
            for peer, address in e.addresses.items():
                self._learn_peer(peer, address)
            ctx.store.save_directory(self.directory)
        elif isinstance(e, fx.StartDkg):
            stored = int(ctx.store.get_meta(f"dkg_attempt:{e.epoch}") or "0")
            attempt = max(stored + 1, dkg.attempts_seen.get(e.epoch, 0))
            dkg.start(e.epoch, e.members, e.threshold, attempt)
        elif isinstance(e, fx.StopDkg):
            if dkg.run is not None and dkg.run.epoch == e.epoch:
                dkg.stop()
        elif isinstance(e, fx.ReleaseBond) and self.bond_wallet is not None:
            try:
                self.bond_wallet.release()
            except Exception as ex:  # the coin stays reserved until its reservation runs out
                log.warning("could not release the bond coin: %s", ex)
        elif isinstance(e, fx.Finished):
            fut = self._waiters.get(e.nonce)
            if fut is not None and not fut.done():
                if e.error is not None:
                    fut.set_exception(MembershipError(e.error))
                else:
                    fut.set_result(e.result or {})
        elif isinstance(e, fx.BuildTransition):
            return self._build(e)
        elif isinstance(e, fx.SignTransition):
            return self._sign(e)
        elif isinstance(e, fx.MakeOffer):
            return self._offer(e.record)
        elif isinstance(e, fx.SignBond):
            return self._sign_bond(e.record, e.request)
        elif isinstance(e, fx.Watch):
            return self._watch(e.record)
        elif isinstance(e, fx.CheckDead):
            return self._check_dead(e.record)
        elif isinstance(e, fx.CheckSetAside):
            return self._check_set_aside(e.records)
        elif isinstance(e, fx.Sweep):
            return self._sweep()
        return None

    async def _feed(self, feed: Callable[[], list[fx.Effect]]) -> None:
        for coro in self._input(feed):
            await coro

    def _schedule(self) -> None:
        """A timer at the machine's next deadline, so a proposer's wait ends on time between heartbeats."""
        deadline = self.machine.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # a worker thread: the next heartbeat looks
            delay = max(0.0, deadline - time.time()) + 0.05
            self._timer = loop.call_later(delay, lambda: self.ctx.spawn(self._feed(self._timeout)))

    def _timeout(self) -> list[fx.Effect]:
        return self.machine.tick(time.time(), self.machine.tip)

    # -- the effects that wait -------------------------------------------------------------------

    async def _judge(self, p: Proposal, peer: PeerId, proposing: bool) -> None:
        """This member's own judgement, one proposal at a time: a second waits until the first is
        adopted or refused, and is then judged against that outcome."""
        if self._considering is None:
            self._considering = asyncio.Lock()
        async with self._considering:
            ctx = self.ctx
            tip, anchor = 0, None
            if ctx.keys is not None and ctx.chain is not None:
                try:
                    tip = await asyncio.to_thread(ctx.chain.tip_height)
                    await asyncio.to_thread(ctx.chain_view.refresh)  # the anchor this change starts from
                except ChainError as e:
                    reason = f"this member cannot read its chain: {e}"
                    if proposing:
                        await self._feed(lambda: self.machine.judged_failed(p, reason))
                    else:
                        await self._feed(lambda: self.machine.refuse(p, peer, Decision(False, BAD_PROPOSAL, reason)))
                    return
                anchor = ctx.chain_view.anchor(ctx.keys.epoch).outpoint
            store = ctx.store
            decisions = OperatorDecisions(store.approvals("join"), frozenset(store.approvals("expel")))
            offline = dict(self.offline.offline)
            args = (p, peer, proposing, tip, time.time(), offline)
            effects = self._input_raw(lambda: self.machine.judged(*args, decisions, anchor))
            if any(isinstance(e, fx.AskAdmission) for e in effects):
                body = {**p.to_body(), "network": ctx.network, "tip": tip}
                verdict = await asyncio.to_thread(ask_admission_command, self.settings.admission_command or "", body)
                decisions = OperatorDecisions(decisions.admitted, decisions.expel_approved, verdict)
                effects = self._input_raw(lambda: self.machine.judged(*args, decisions, anchor, asked=True))
            with self._lock:
                pending = self._apply(effects)
            for coro in pending:
                await coro

    def _input_raw(self, feed: Callable[[], list[fx.Effect]]) -> list[fx.Effect]:
        with self._lock:
            self._seat()
            return feed()

    async def _build(self, e: fx.BuildTransition) -> None:
        p = e.record.proposal
        try:
            plan, prevouts = await asyncio.to_thread(
                transition_tx.build, self.ctx, p, e.group_key, e.recovery, e.offer
            )
        except (transition_tx.TransitionFailed, ChainError) as ex:
            reason = str(ex)
            await self._feed(lambda: self.machine.fail(reason, time.time()))
            return
        except Exception as ex:  # a bug must end the change (with its abort), never leave it waiting
            log.exception("the transition could not be built")
            reason = f"{type(ex).__name__}: {ex}"
            await self._feed(lambda: self.machine.fail(reason, time.time()))
            return
        await self._feed(lambda: self.machine.built(e.record, plan, prevouts, time.time()))

    async def _sign(self, e: fx.SignTransition) -> None:
        try:
            outcome = await transition_tx.sign(
                self.ctx, self.hooks.request_signatures, e.record.proposal, e.plan, e.recovery, e.offer, e.extra
            )
        except Exception as ex:
            reason = str(ex) if isinstance(ex, transition_tx.TransitionFailed) else f"{type(ex).__name__}: {ex}"
            await self._feed(lambda: self.machine.fail(reason, time.time()))
            return
        if outcome.get("broadcast_failed"):
            log.warning(
                "transition %s signed but not broadcast (%s); retrying", outcome["txid"], outcome["broadcast_failed"]
            )
        await self._feed(lambda: self.machine.signed(e.record, outcome, time.time()))

    async def _offer(self, rec: ChangeRecord) -> None:
        p, ctx = rec.proposal, self.ctx
        try:
            offer = await asyncio.to_thread(bond_exchange.make_offer, self.bond_wallet, self.bond_key, p, ctx.network)
        except (ChainError, bond_exchange.BondRefused, BondWalletError) as e:
            log.error("cannot offer a bond: %s", e)
            await ctx.send(p.proposer, ChangeAck(p.epoch, False, f"no bond: {e}"[:500]))
            return
        await ctx.send_raw(p.proposer, Kind.BOND_OFFER, {"epoch": p.epoch, **offer.to_body()})

    async def _sign_bond(self, rec: ChangeRecord, ask: BondSign) -> None:
        p, ctx = rec.proposal, self.ctx
        try:
            script_sig, witness, bond = await asyncio.to_thread(
                bond_exchange.sign_bond_input, self.bond_wallet, self.bond_key, p, ask
            )
        except (ChainError, bond_exchange.BondRefused, BondWalletError, MessageError, ValueError) as e:
            log.error("refusing to sign the join transaction: %s", e)
            reason = f"joiner refuses: {e}"[:500]
            await ctx.send(p.proposer, ChangeAck(p.epoch, False, reason))
            return
        self._input(lambda: self.machine.bond_recorded(rec, bond))
        await ctx.send(p.proposer, BondSigned(p.epoch, script_sig, tuple(witness)))

    async def _watch(self, rec: ChangeRecord) -> None:
        if self.ctx.chain is None:
            return
        try:
            found, tip = await asyncio.to_thread(activation.find_transition, self.ctx, self.settings, rec)
        except ChainError as e:
            log.warning("cannot look for the transition: %s", e)
            return
        if found is not None:
            await self._feed(lambda: self.machine.confirmed(rec, found[0], found[1], tip, time.time()))
        else:
            self._spawn_all(self._input(lambda: self.machine.watched(rec, tip)))

    async def _check_dead(self, rec: ChangeRecord) -> None:
        if self.ctx.chain is None:
            return
        why, anchor = await asyncio.to_thread(activation.transition_impossible, self.ctx, self.settings, rec)
        if anchor is not None and rec.anchor is None:
            self._spawn_all(self._input(lambda: self.machine.note_anchor(rec, anchor)))
        if why is not None:
            await self._feed(lambda: self.machine.impossible(rec, why, time.time()))

    async def _check_set_aside(self, records: list[ChangeRecord]) -> None:
        found = await asyncio.to_thread(activation.dropped_change_on_chain, self.ctx, self.settings, records)
        if found is not None:
            rec, txid, tip = found
            await self._feed(lambda: self.machine.take_over(rec, txid, tip, time.time()))

    async def _sweep(self) -> None:
        if not await asyncio.to_thread(sweep.sweep_check, self.ctx, self.machine):
            self.machine.last_checks["sweep"] = time.time() - 25  # try again in a few seconds

    # -- the member's side of an activation ------------------------------------------------------

    def _activate_in_store(self, rec: ChangeRecord) -> None:
        """The new epoch takes over in the store (in the step's transaction: a crash leaves either the
        old epoch active or the new one). The old epoch's share is kept, sealed: coins may still sit at
        its addresses; the sweep deletes it once none do, and only if this member checked the transition."""
        store, p = self.ctx.store, rec.proposal
        old = store.active_epoch()
        new = store.epoch(p.epoch)
        assert rec.activation is not None
        if p.kind in ("join", "expel"):
            store.withdraw_approval(p.kind, p.subject)  # used: a later change asks the operator again
        if old is not None:
            store.save_epoch(EpochRecord(**{**old.__dict__, "status": "retired"}))
        if new is not None and not rec.activation["left"]:
            store.save_epoch(
                EpochRecord(**{**new.__dict__, "status": "active", "activation_txid": rec.activation["txid"]})
            )
        store.save_change(p.proposer.hex(), p.nonce, p.epoch, rec.state.value, rec.to_json())
        for other in self.machine.records.values():  # their dead shares went with the activation
            if other is not rec and other.epoch == p.epoch:
                store.save_change(
                    other.proposal.proposer.hex(), other.proposal.nonce, other.epoch, other.state.value, other.to_json()
                )

    def _activated(self, rec: ChangeRecord) -> None:
        ctx, p = self.ctx, rec.proposal
        self.machine.last_checks.pop("sweep", None)  # look at the old epoch's addresses soon
        assert rec.activation is not None
        new = ctx.store.epoch(p.epoch)
        if rec.activation["left"] or new is None:
            ctx.keys = None
            ctx.members = []
            log.info("epoch %d is active without this member: it has left the federation", p.epoch)
            return
        self.hooks.activate(new)
        log.info(
            "epoch %d active: %d members, t = %d, key %s", p.epoch, len(p.members), p.threshold, new.group_key.hex()
        )

"""A member's side of membership changes: proposing a join, leave or expulsion, taking part in one,
being the joiner, and activating the next epoch once its transition transaction is confirmed.

The flow (the proposer coordinates; every step can fail, and a failure leaves epoch e untouched):
  tprop        proposer -> old and new members: the proposal; each checks it and answers `tack`
  DKG          the members of the new list run ChillDKG (the node's echo-broadcast DKG)
  tdkg         new members -> proposer: the recovery data, whose certificate proves the new key
  bond_req / bond_offer / bond_sign / bond_signed   on a join, the joiner's input and its signature
  sreq ...     ROAST among epoch e's members, each checking the transition on its own chain data
  tdone        proposer -> everyone: the broadcast transaction; activation waits for confirmations
  tabort       proposer -> everyone: the change failed; drop its state
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shlex
import sqlite3
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bitcoin.core import CTransaction, CTxOut, b2lx
from bitcoin.core.script import CScript
from coincurve import PrivateKey

from frostfed.bitcoin.bond import bond_script
from frostfed.bitcoin.chain import ChainError
from frostfed.bitcoin.policy import COINBASE_MATURITY, PolicyRejection, Standardness
from frostfed.federation.bond_wallet import BondWallet, BondWalletError
from frostfed.federation.change_judgement import (
    BAD_PROPOSAL,
    OPERATOR_CODES,
    CommandVerdict,
    Decision,
    OfflineClock,
    OperatorDecisions,
    OwnRecords,
    judge_proposal,
)
from frostfed.federation.config import MembershipSettings
from frostfed.federation.dkg_run import DkgResult, chain_code_of
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.messages import Message, MessageError
from frostfed.federation.progress import Wait, no_answer
from frostfed.federation.roast_signing import SigningError
from frostfed.federation.signing_request import SigningRequest, tasks_for_inputs
from frostfed.federation.store import EpochRecord
from frostfed.federation.transition import (
    TRANSITION_PATH,
    BondOffer,
    Proposal,
    ProposalRefused,
    build_transition_tx,
    check_proposal,
    check_transition_tx,
    make_proposal,
    verify_new_epoch_key,
)
from frostfed.frost import chilldkg
from frostfed.frost.roast import SigningTask

if TYPE_CHECKING:
    from frostfed.federation.node import Member

log = logging.getLogger(__name__)

PeerId = bytes

DEAD_AFTER_BLOCKS = 6
"""How deep another spend of the anchor must be before a change whose transition it rules out is dropped."""


class MembershipError(Exception):
    """A membership change that could not be made; the message says why."""


class _Refused(Exception):
    """This member's own judgement refuses a proposal."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def ask_admission_command(command: str, proposal: dict[str, Any], timeout: float = 30.0) -> CommandVerdict:
    """`membership.admission_command`: the decoded proposal on stdin, `{"accept": bool, "reason": ...}` on
    stdout. Anything else (an error, a timeout, another answer) is a refusal: a broken command admits
    no one."""
    argv = shlex.split(command)
    what = f"admission command {argv[0]!r}" if argv else "admission command"
    try:
        proc = subprocess.run(argv, input=json.dumps(proposal), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CommandVerdict(False, f"{what} gave no answer within {timeout:.0f} s")
    except (OSError, ValueError) as e:
        return CommandVerdict(False, f"{what} could not run: {e}")
    if proc.returncode != 0:
        return CommandVerdict(False, f"{what} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}")
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("accept"), bool):
        return CommandVerdict(False, f"{what} answered {proc.stdout.strip()[:200]!r}, not {{'accept': bool}}")
    return CommandVerdict(answer["accept"], str(answer.get("reason") or "no reason given")[:300])


class Membership:
    def __init__(
        self,
        member: Member,
        settings: MembershipSettings,
        directory: dict[PeerId, str],
        bond_key: bytes | None,
        add_peer: Callable[[PeerId, str], None] | None,
        bond_wallet: BondWallet | None = None,
    ) -> None:
        self.member = member
        self.settings = settings
        self.directory = {**directory, **member.store.directory()}
        self.bond_key = PrivateKey(bond_key) if bond_key else None
        self._add_peer = add_peer
        self.bond_wallet = bond_wallet
        self.proposal: Proposal | None = None
        self.last_error: str | None = None
        self.waiting: Wait | None = None  # the step a change this member proposes waits on (frost-status)
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._refusals: dict[str, str] = {}
        self._aborted: set[tuple[PeerId, str]] = set()  # (sender, nonce) of every abort heard
        self._expelling: asyncio.Task[None] | None = None
        self._proposing = False
        self._considering: asyncio.Lock | None = None
        self._last_sweep_check = 0.0
        self._adopted_at = 0.0
        self.clock = OfflineClock(member.store.offline_seconds())
        self._clock_saved = 0.0
        self._reported: dict[PeerId, bytes] = {}  # new member -> the new key it holds a share of
        self._named: dict[tuple[int, PeerId | None], int] = {}  # candidates named, by (epoch, hinting member)
        self._accepted_key: tuple[str, bytes] | None = None  # (proposal nonce, new key) a proposer accepted
        self._expel_error: str | None = None
        self._last_dead_check = 0.0
        self._last_recover_check = 0.0
        self.handlers: dict[str, Callable[[PeerId, Message], Any]] = {
            "tprop": self._on_proposal,
            "tack": self._on_ack,
            "tdkg": self._on_new_key,
            "bond_req": self._on_bond_request,
            "bond_offer": self._on_bond_offer,
            "bond_sign": self._on_bond_sign,
            "bond_signed": self._on_bond_signed,
            "tdone": self._on_done,
            "tabort": self._on_abort,
        }

    # -- state -----------------------------------------------------------------------------------

    def extra_peers(self) -> set[PeerId]:
        """Peers beyond the current epoch whose messages are accepted: the members of a proposed
        epoch and, while this member is joining, the members it was told to contact."""
        peers: set[PeerId] = set()
        if self.proposal is not None:
            peers.update(self.proposal.members)
            peers.add(self.proposal.proposer)
        if self.member.keys is None:
            peers.update(self.directory)
        return peers

    def resume(self) -> None:
        """After a restart: the change in progress, if any, and its peers."""
        raw = self.member.store.get_meta("proposal")
        if raw:
            with contextlib.suppress(MessageError, ValueError):
                self.proposal = Proposal.from_message(Message("tprop", json.loads(raw)))
                self._adopted_at = time.monotonic()  # the change's clock restarts with the member
        for peer, address in self.directory.items():
            self._learn_peer(peer, address)

    def _learn_peer(self, peer: PeerId, address: str) -> None:
        if peer == self.member.me:
            return
        self.directory[peer] = address
        if self._add_peer is not None:
            try:
                self._add_peer(peer, address)
            except Exception as e:  # an unreachable address only delays that peer
                log.warning("cannot add peer %s at %s: %s", peer.hex()[:16], address, e)

    def _adopt(self, p: Proposal) -> None:
        """Take part in `p`: remember it, reach its members, run its DKG if this member is in it."""
        self.proposal = p
        self._adopted_at = time.monotonic()
        self.member.store.set_meta("proposal", json.dumps(p.to_body()))
        for record in ("transition_judged", "transition_txids", "transition_txid", "transition_tx"):
            self.member.store.set_meta(f"{record}:{p.epoch}", "")  # an earlier change to this epoch's, if any
        self._named = {k: v for k, v in self._named.items() if k[0] != p.epoch}
        if self.member.keys is not None:  # the anchor every transition of this change comes after
            anchor = self.member.chain_view.anchor(self.member.keys.epoch).outpoint
            self.member.store.set_meta(f"transition_anchor:{p.epoch}", json.dumps(anchor) if anchor else "")
        for peer, address in p.addresses.items():
            self._learn_peer(peer, address)
        self.member.store.save_directory(self.directory)
        if self.member.me in p.members:
            stored = int(self.member.store.get_meta(f"dkg_attempt:{p.epoch}") or "0")
            attempt = max(stored + 1, self.member.dkg_attempts_seen.get(p.epoch, 0))
            self.member._start_dkg(p.epoch, p.members, p.threshold, attempt)

    async def _read_chain(self) -> None:
        if self.member.keys is not None and self.member.chain is not None:
            with contextlib.suppress(ChainError):
                await asyncio.to_thread(self.member.chain_view.refresh)

    def _drop(self, reason: str, forget_key: bool = True) -> None:
        """Give up on the change in progress. Its new key share is deleted only when the change is
        known to have failed (an abort); after a mere timeout it is kept, since the transition may
        still have been broadcast by a proposer this member no longer hears."""
        p = self.proposal
        if p is None:
            return
        log.warning("membership change to epoch %d dropped: %s", p.epoch, reason)
        self.last_error = reason
        run = self.member._dkg
        if run is not None and run.epoch == p.epoch:
            self.member.stop_dkg()
        rec = self.member.store.epoch(p.epoch)
        if rec is not None and rec.status == "pending" and not self._candidates(p.epoch):
            # kept aside, sealed, with the change it came from: an abort sent to some members only (or a
            # proposer gone silent) does not stop the others, and `_recover_dropped` takes the epoch
            # over if this member's chain shows it happened
            self._set_aside(p, rec, delete=forget_key)
        self.proposal = None
        self._reported = {}
        self._accepted_key = None
        self.member.store.set_meta("proposal", "")
        if p.subject == self.member.me and self.bond_wallet is not None:
            self._release_bond_coin()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(MembershipError(reason))
        self._waiters.clear()

    def _set_aside(self, p: Proposal, rec: EpochRecord, delete: bool) -> None:
        """Keep the share of a dropped change with that change, if this member's own DKG of that very
        change made it; `delete`: out of the epochs (an abort), else left there as it was (a timeout)."""
        store = self.member.store
        with store.transaction():
            if store.get_meta(f"pending_nonce:{p.epoch}") == p.nonce:
                raw = store.get_meta(f"abandoned:{p.epoch}")
                kept = [e for e in (json.loads(raw) if raw else []) if e["proposal"]["nonce"] != p.nonce]
                kept.append({"proposal": p.to_body(), "record": _record_json(rec)})
                store.set_meta(f"abandoned:{p.epoch}", json.dumps(kept[-16:]))
            elif delete:  # a share of another change to this epoch: kept, but never taken over on its own
                store.set_meta(f"abandoned:{p.epoch}:{rec.group_key.hex()}", json.dumps(_record_json(rec)))
            if delete:
                store.delete_epoch(p.epoch)

    def dropped_change_on_chain(self) -> tuple[Proposal, EpochRecord, str] | None:
        """A change this member dropped (a proposer's abort, perhaps sent to some members only, or a
        proposer gone silent) that took place all the same: this member's own chain index shows the
        current epoch's anchor spent to the transition path of the key this member's own DKG of that
        change produced, with the confirmations the settings require. The coins sit at that key, so
        this member takes over the new epoch like the others; nobody's word counts here. Runs in a
        worker thread (the chain source, the store)."""
        member = self.member
        store = member.store
        active = store.active_epoch()
        if active is None or member.chain is None:
            return None
        epoch = active.epoch + 1
        raw = store.get_meta(f"abandoned:{epoch}")
        if not raw:
            return None
        try:
            member.chain_view.refresh()
        except ChainError:
            return None
        index = member.chain_view.index
        tip = index.tip_height()
        for entry in json.loads(raw):
            try:
                p = Proposal.from_message(Message("tprop", entry["proposal"]))
                rec = _record_of(entry["record"])
            except (KeyError, TypeError, ValueError, MessageError):
                continue
            if p.epoch != epoch or rec.epoch != epoch or rec.members != p.members or rec.threshold != p.threshold:
                continue
            new_keys = EpochKeys(epoch, p.members, p.threshold, rec.group_key, rec.chain_code, [], member.network)
            found = index.anchor_spend_to(active.epoch, new_keys.script(TRANSITION_PATH))
            if found is not None and tip - found[1] + 1 >= self.settings.transition_confirmations:
                store.set_meta("last_tip", str(tip))
                return p, rec, found[0]
        return None

    def take_over(self, p: Proposal, rec: EpochRecord, txid: str) -> None:
        """The dropped change's share back in the epochs, and the new epoch active (in the event loop)."""
        log.warning(
            "the change to epoch %d was dropped here, but this member's chain shows its coins moved to its key %s "
            "in %s: it takes over the new epoch",
            p.epoch,
            rec.group_key.hex(),
            txid,
        )
        store = self.member.store
        with store.transaction():
            store.save_epoch(rec)
            store.set_meta(f"pending_nonce:{p.epoch}", p.nonce)
        self._activate(p, txid, judged=False)
        store.set_meta(f"abandoned:{p.epoch}", "")

    def _waiter(self, name: str) -> asyncio.Future[Any]:
        fut = self._waiters.get(name)
        if fut is None or fut.done():
            fut = self._waiters[name] = asyncio.get_running_loop().create_future()
        return fut

    def _resolve(self, name: str, value: Any) -> None:
        fut = self._waiters.get(name)
        if fut is not None and not fut.done():
            fut.set_result(value)

    # -- proposing -------------------------------------------------------------------------------

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
        if self._proposing:
            raise MembershipError("this member is already proposing a change")
        if operator and kind == "join" and subject not in self.member.store.approvals("join"):
            self.member.store.approve("join", subject)
        if operator and kind == "expel":
            self.member.store.approve("expel", subject)
        self._proposing = True
        try:
            return await self._propose(kind, subject, address, bond_sats, bond_blocks)
        finally:
            self._proposing = False
            self.waiting = None

    async def _propose(
        self,
        kind: str,
        subject: PeerId,
        address: str | None,
        bond_sats: int | None,
        bond_blocks: int | None,
    ) -> dict[str, Any]:
        timeout = self.settings.change_timeout_seconds
        member = self.member
        keys = member.keys
        if keys is None or member.chain is None:
            raise MembershipError("this member has no active epoch or no chain source")
        if member.rpc is None:
            raise MembershipError("this member has no bitcoind to find the federation's coins")
        if self.proposal is not None:
            raise MembershipError(f"a change to epoch {self.proposal.epoch} is already in progress")
        tip = await asyncio.to_thread(member.chain.tip_height)
        try:
            p = make_proposal(
                keys, self.directory, kind, subject, member.me, self.settings, tip, address, bond_sats, bond_blocks
            )
        except ProposalRefused as e:
            raise MembershipError(str(e)) from None
        await self._read_chain()
        decision = await asyncio.to_thread(self.judge, p, tip, dict(self.clock.offline))
        if not decision.accept:
            raise MembershipError(decision.reason)
        self._refusals = {}
        self._reported = {}
        self._accepted_key = None
        dkg = self._waiter("dkg")
        self._adopt(p)
        targets = sorted((set(keys.members) | set(p.members)) - {member.me})
        await asyncio.gather(*(member._send(t, "tprop", p.to_body()) for t in targets))
        try:
            self.waiting = Wait(f"the DKG of epoch {p.epoch}", tuple(p.members))
            group_key, recovery = await asyncio.wait_for(dkg, timeout)
            new_keys = EpochKeys(p.epoch, p.members, p.threshold, group_key, chain_code_of(recovery), [], keys.network)
            offer = None
            if p.kind == "join":
                fut = self._waiter("offer")
                self.waiting = Wait("the joiner's bond offer", (p.subject,))
                await member._send(p.subject, "bond_req", {"epoch": p.epoch})
                offer = await asyncio.wait_for(fut, timeout)
            outcome = await self._sign_transition(p, keys, new_keys, recovery, offer, timeout)
        except MembershipError as e:
            await self._abort(targets, str(e))
            raise
        except TimeoutError:
            why = "; ".join(f"{k[:16]}: {v}" for k, v in self._refusals.items()) or no_answer(member, self.waiting)
            await self._abort(targets, f"the change did not complete ({why})")
            raise MembershipError(f"the change did not complete ({why})") from None
        except Exception as e:
            await self._abort(targets, f"{type(e).__name__}: {e}")
            raise
        txid = outcome["txid"]
        await asyncio.gather(*(member._send(t, "tdone", {"epoch": p.epoch, "txid": txid}) for t in targets))
        self._record_txid(p.epoch, txid)
        return {
            "epoch": p.epoch,
            "kind": p.kind,
            "subject": p.subject.hex(),
            "txid": txid,
            "members": [m.hex() for m in p.members],
            "threshold": p.threshold,
            "group_key": group_key.hex(),
            "signers": outcome["signers"],
            "activation": f"after {self.settings.transition_confirmations} confirmation(s)",
        }

    async def _sign_transition(
        self,
        p: Proposal,
        keys: EpochKeys,
        new_keys: EpochKeys,
        recovery: bytes,
        offer: BondOffer | None,
        timeout: float,
    ) -> dict[str, Any]:
        from frostfed.federation.coins import find_coins

        member = self.member
        assert member.rpc is not None and member.chain is not None
        coins = await asyncio.to_thread(
            find_coins, member.chain_view, member.chain, keys, member.policy_settings.min_confirmations
        )
        anchor = member.chain_view.anchor(keys.epoch)  # every member refuses a transition without it
        if coins and anchor.outpoint not in [(c.utxo.txid, c.utxo.vout) for c in coins]:
            where = f"{anchor.outpoint[0]}:{anchor.outpoint[1]}" if anchor.outpoint else "none yet"
            raise MembershipError(f"the anchor coin ({where}) is not spendable yet; a transition spends it")
        rate = max(member.policy_settings.min_feerate, min(2.0, member.policy_settings.max_feerate))
        try:
            plan = build_transition_tx(
                [(c.utxo, c.path) for c in coins], new_keys.script(TRANSITION_PATH), rate, p, offer
            )
        except ProposalRefused as e:
            raise MembershipError(str(e)) from None
        extra: dict[int, tuple[bytes, list[bytes]]] = {}
        if offer is not None and plan.bond_input is not None:
            prevouts = []
            for c in coins:
                prevouts.append(
                    {
                        "txid": c.utxo.txid,
                        "vout": c.utxo.vout,
                        "scriptPubKey": c.utxo.script_pubkey.hex(),
                        "amount": c.utxo.amount_sats,
                    }
                )
            fut = self._waiter("signed")
            body = {"epoch": p.epoch, "tx": plan.tx.serialize().hex(), "prevouts": prevouts}
            self.waiting = Wait("the joiner's signature of its bond input", (p.subject,))
            await member._send(p.subject, "bond_sign", body)
            extra[plan.bond_input] = await asyncio.wait_for(fut, timeout)  # (scriptSig, witness)
        self.waiting = None
        paths = [None] * len(plan.tx.vin)
        for i, path in plan.fed_inputs:
            paths[i] = path
        req = SigningRequest(
            secrets.token_hex(8),
            keys.epoch,
            "transition",
            plan.tx,
            tuple(paths),
            {},
            {"proposal": p.to_body(), "recovery": recovery.hex(), "bond_key": offer.bond_key.hex() if offer else ""},
        )
        try:
            return await member.request_signatures(req, extra)
        except SigningError as e:
            if e.outcome.get("tx") and e.outcome.get("txid"):
                # signed, the broadcast failed: aborting now could strand the coins if it did get
                # through; the transaction is kept and broadcast again until it confirms
                member.store.set_meta(f"transition_tx:{p.epoch}", e.outcome["tx"])
                log.warning("transition %s signed but not broadcast (%s); retrying", e.outcome["txid"], e)
                return e.outcome
            reasons = e.outcome.get("rejections") or {}
            detail = "; ".join(f"{k[:16]}: {v}" for k, v in reasons.items())
            raise MembershipError(f"the current members did not sign the transition: {e}. {detail}".strip()) from None

    async def _abort(self, targets: list[PeerId], reason: str) -> None:
        p = self.proposal
        if p is not None:
            body = {"epoch": p.epoch, "nonce": p.nonce, "reason": reason[:500]}
            await asyncio.gather(*(self.member._send(t, "tabort", body) for t in targets))
        self._drop(reason)

    # -- taking part -----------------------------------------------------------------------------

    async def _on_proposal(self, peer: PeerId, msg: Message) -> None:
        """Proposals are considered one at a time: a second waits until the first is adopted or
        refused, and is then judged against that outcome."""
        if self._considering is None:
            self._considering = asyncio.Lock()
        async with self._considering:
            await self._consider(peer, msg)

    async def _consider(self, peer: PeerId, msg: Message) -> None:
        p = Proposal.from_message(msg)
        member = self.member
        if peer != p.proposer:
            raise MessageError("a proposal must come from its proposer")
        try:
            if self.proposal is not None and self.proposal.to_body() == p.to_body():
                return  # a repeat
            if self.proposal is not None:
                raise ProposalRefused(f"a change to epoch {self.proposal.epoch} is already in progress")
            if member.keys is None:
                # a joiner: only a join of itself, proposed by a member it was told about
                if p.kind != "join" or p.subject != member.me or peer not in self.directory:
                    raise ProposalRefused("this node only joins, and only through the members it knows")
            else:
                assert member.chain is not None
                tip = await asyncio.to_thread(member.chain.tip_height)
                await self._read_chain()  # the anchor this change starts from (see _adopt)
                check_proposal(p, member.keys, self.settings, tip)
                if self.proposal is not None or self._proposing:
                    raise ProposalRefused("this member is taking part in another change")
                decision = await asyncio.to_thread(self.judge, p, tip, dict(self.clock.offline))
                if not decision.accept:
                    raise _Refused(decision)
            if (p.proposer, p.nonce) in self._aborted:
                return  # its abort overtook it
            if dropped := member.store.get_meta(_dropped_key(p)):
                raise ProposalRefused(f"this member dropped this change: {dropped}")
        except (ProposalRefused, ChainError, _Refused) as e:
            code = e.decision.code if isinstance(e, _Refused) else BAD_PROPOSAL
            reason = e.decision.reason if isinstance(e, _Refused) else str(e)
            log.warning("proposal for epoch %d from %s refused: %s", p.epoch, peer.hex()[:16], reason)
            if member.keys is not None:
                member.store.record_refusal("proposal", p.to_body(), code, reason)
            await member._send(peer, "tack", {"epoch": p.epoch, "ok": False, "reason": f"{code}: {reason}"[:500]})
            return
        log.info("taking part in the %s of %s (epoch %d)", p.kind, p.subject.hex()[:16], p.epoch)
        self._adopt(p)
        await member._send(peer, "tack", {"epoch": p.epoch, "ok": True, "reason": ""})

    def judge(self, p: Proposal, tip: int, offline: dict[PeerId, float]) -> Decision:
        """This member's own judgement of `p` (see change_judgement), from its own records (`offline`:
        its offline clock, read in the event loop) and its operator's decisions; the admission command
        is asked only when no operator decided. Runs in a worker thread (the store, the command)."""
        store = self.member.store
        in_progress = self.proposal.nonce if self.proposal is not None else None
        raw_height, raw_time = store.get_meta("last_change_height"), store.get_meta("last_change_time")
        records = OwnRecords(
            tip_height=tip,
            now=time.time(),
            change_in_progress=in_progress,
            last_change_height=int(raw_height) if raw_height else None,
            last_change_time=float(raw_time) if raw_time else None,
            offline_seconds=offline,
        )
        decisions = OperatorDecisions(store.approvals("join"), frozenset(store.approvals("expel")))
        decision = judge_proposal(p, self.settings, records, decisions)
        command = self.settings.admission_command
        if not decision.accept and decision.code in OPERATOR_CODES and command:
            verdict = ask_admission_command(command, {**p.to_body(), "network": self.member.network, "tip": tip})
            decisions = OperatorDecisions(decisions.admitted, decisions.expel_approved, verdict)
            decision = judge_proposal(p, self.settings, records, decisions)
        return decision

    def approvals(self) -> dict[str, Any]:
        store = self.member.store
        return {
            "admitted": {k.hex(): v for k, v in store.approvals("join").items()},
            "admitted_by_config": sorted(k.hex() for k in self.settings.admit),
            "expel_approved": sorted(k.hex() for k in store.approvals("expel")),
        }

    def _watch(self) -> None:
        """Advance this member's own offline clock of every peer, and keep it in the store."""
        member = self.member
        keys = member.keys
        if keys is None:
            return
        now = time.time()
        online = {m: member.online(m) for m in keys.members if m != member.me}
        reset = self.clock.tick(now, online, now - member.started > member.offline_after_seconds)
        if reset or now - self._clock_saved > 5:  # a crash loses at most 5 s of an outage, never a return
            self.save_clock()

    def save_clock(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # a closed store at shutdown: nothing more to keep
            self.member.store.save_offline_seconds(self.clock.offline)
        self._clock_saved = time.time()

    def _on_ack(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        if p is None or msg.integer("epoch") != p.epoch or p.proposer != self.member.me:
            return
        if not msg.get("ok", bool):
            self._refusals[peer.hex()] = msg.text("reason", 500)
            if peer in p.members:  # the DKG needs every new member
                fut = self._waiters.get("dkg")
                if fut is not None and not fut.done():
                    fut.set_exception(MembershipError(f"member {peer.hex()[:16]} refuses: {msg.text('reason', 500)}"))

    def on_dkg_done(self, result: DkgResult, epoch: int) -> None:
        p = self.proposal
        if p is None or p.epoch != epoch:
            return
        with self.member.store.transaction():
            self.member.store.save_epoch(self.member.epoch_record(result, epoch, "pending"))
            self.member.store.set_meta(f"pending_nonce:{epoch}", p.nonce)  # the change this share is for
        log.info("epoch %d key ready: %s (active once the transition confirms)", epoch, result.group_key.hex())
        if p.proposer == self.member.me:
            self._key_reported(self.member.me, result.group_key, result.recovery)
        else:
            body = {"epoch": epoch, "recovery": result.recovery.hex()}
            self.member._spawn(self.member._send(p.proposer, "tdkg", body))

    def known_hostkeys(self) -> dict[PeerId, bytes]:
        rec = self.member.store.active_epoch()
        if rec is None:
            return {}
        _, params = chilldkg.coordinator_recover(rec.recovery)
        return dict(zip(rec.members, params.hostpubkeys, strict=True))

    def _on_new_key(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        if p is None or msg.integer("epoch") != p.epoch or p.proposer != self.member.me or peer not in p.members:
            return
        recovery = msg.hexbytes("recovery", max_len=1 << 20)
        try:
            group_key = verify_new_epoch_key(recovery, p, self.known_hostkeys())
        except PolicyRejection as e:
            log.warning("new epoch key from %s refused: %s", peer.hex()[:16], e.message)
            return
        self._key_reported(peer, group_key, recovery)

    def _key_reported(self, peer: PeerId, group_key: bytes, recovery: bytes) -> None:
        """The transition is signed only once every member of the new list holds its share of the
        same new key: each says so (`tdkg`), the proposer's own DKG counts for itself."""
        p = self.proposal
        if p is None:
            return
        self._reported[peer] = group_key
        if all(self._reported.get(m) == group_key for m in p.members):
            self._accepted_key = (p.nonce, group_key)
            self._resolve("dkg", (group_key, recovery))

    # -- the joiner's side -----------------------------------------------------------------------

    async def _on_bond_request(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        member = self.member
        if p is None or p.subject != member.me or peer != p.proposer or msg.integer("epoch") != p.epoch:
            return
        try:
            offer = await asyncio.to_thread(self._make_offer, p)
        except (ChainError, MembershipError, BondWalletError) as e:
            log.error("cannot offer a bond: %s", e)
            await member._send(peer, "tack", {"epoch": p.epoch, "ok": False, "reason": f"no bond: {e}"[:500]})
            return
        await member._send(peer, "bond_offer", {"epoch": p.epoch, **offer.to_body()})

    def _make_offer(self, p: Proposal) -> BondOffer:
        wallet = self.bond_wallet
        if wallet is None or self.bond_key is None:
            raise MembershipError("this node has no wallet to pay a bond from")
        coin = wallet.offer(p.bond_sats, self.member.network)
        return BondOffer(coin.outpoint, coin.amount, self.bond_key.public_key.format()[1:], coin.change_script)

    def _release_bond_coin(self) -> None:
        assert self.bond_wallet is not None
        try:
            self.bond_wallet.release()
        except Exception as e:  # the coin stays reserved until its reservation runs out
            log.warning("could not release the bond coin: %s", e)

    def _on_bond_offer(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        if p is None or p.proposer != self.member.me or peer != p.subject or msg.integer("epoch") != p.epoch:
            return
        self._resolve("offer", BondOffer.from_message(msg))

    async def _on_bond_sign(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        member = self.member
        if p is None or p.subject != member.me or peer != p.proposer or msg.integer("epoch") != p.epoch:
            return
        try:
            script_sig, witness = await asyncio.to_thread(self._sign_bond_input, p, msg)
        except (ChainError, MembershipError, BondWalletError, ValueError) as e:
            log.error("refusing to sign the join transaction: %s", e)
            await member._send(peer, "tack", {"epoch": p.epoch, "ok": False, "reason": f"joiner refuses: {e}"[:500]})
            return
        body = {"epoch": p.epoch, "script_sig": script_sig.hex(), "witness": [w.hex() for w in witness]}
        await member._send(peer, "bond_signed", body)

    def _sign_bond_input(self, p: Proposal, msg: Message) -> tuple[bytes, list[bytes]]:
        """The joiner signs only a transaction that spends its offered coin into its bond (with the
        agreed lock time) and its change (the wallet checks both), and nothing of its own elsewhere."""
        wallet = self.bond_wallet
        coin = wallet.coin if wallet is not None else None
        if wallet is None or self.bond_key is None or coin is None:
            raise MembershipError("no bond was offered")
        tx = CTransaction.deserialize(msg.hexbytes("tx", max_len=400_000))
        bond = CTxOut(p.bond_sats, CScript(bond_script(self.bond_key.public_key.format()[1:], p.bond_locktime)))
        prevouts: dict[tuple[str, int], CTxOut] = {}
        for po in msg.get("prevouts", list):
            try:
                prevouts[(str(po["txid"]), int(po["vout"]))] = CTxOut(
                    int(po["amount"]), CScript(bytes.fromhex(str(po["scriptPubKey"])))
                )
            except (KeyError, TypeError, ValueError):
                raise MembershipError("a prevout of the join transaction is malformed") from None
        script_sig, witness = wallet.sign(tx, prevouts, coin.outpoint, bond)
        vout = next(i for i, o in enumerate(tx.vout) if o.scriptPubKey == bond.scriptPubKey)
        bond_record = {"txid": b2lx(tx.GetTxid()), "vout": vout, "sats": p.bond_sats, "locktime": p.bond_locktime}
        self.member.store.set_meta("bond", json.dumps(bond_record))
        return script_sig, witness

    def _on_bond_signed(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        if p is None or p.proposer != self.member.me or peer != p.subject or msg.integer("epoch") != p.epoch:
            return
        self._resolve("signed", (msg.hexbytes("script_sig", max_len=1650), msg.hexlist("witness", max_items=20)))

    # -- the end of a change ---------------------------------------------------------------------

    def _on_done(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        if p is None or peer != p.proposer or msg.integer("epoch") != p.epoch:
            return
        txid = msg.hexbytes("txid", 32).hex()
        self._record_txid(p.epoch, txid)
        raw = self.member.store.get_meta("bond")
        if raw and p.subject == self.member.me:  # the joiner's input may change the txid (a legacy input)
            self.member.store.set_meta("bond", json.dumps({**json.loads(raw), "txid": txid}))

    def _record_txid(self, epoch: int, txid: str, hinted_by: PeerId | None = None) -> None:
        """A candidate for the epoch's transition transaction (from the proposer, or a hint); it
        counts only once this member has found it in a block and checked what it spends and pays.
        Each member's hint counts once per epoch (its first), and the proposer's `tdone`s at most 16
        times, so one member naming made-up transactions cannot crowd out the others' candidates."""
        store = self.member.store
        candidates = self._candidates(epoch)
        if txid in candidates:
            return
        source = (epoch, hinted_by)  # (epoch, None): the proposer's `tdone`
        if source in self._named and (hinted_by is not None or self._named[source] >= 16):
            return
        self._named[source] = self._named.get(source, 0) + 1
        candidates[txid] = self._tip_hint()
        store.set_meta(f"transition_txids:{epoch}", json.dumps(candidates))
        store.set_meta(f"transition_txid:{epoch}", txid)
        log.info("epoch %d transition candidate %s; waiting for confirmations", epoch, txid)

    def _candidates(self, epoch: int) -> dict[str, int]:
        raw = self.member.store.get_meta(f"transition_txids:{epoch}")
        return json.loads(raw) if raw else {}

    def _tip_hint(self) -> int:
        raw = self.member.store.get_meta("last_tip")
        return int(raw) if raw else 0

    def _on_abort(self, peer: PeerId, msg: Message) -> None:
        p = self.proposal
        if len(self._aborted) >= 1000:  # a peer's stream of aborts must not grow without bound
            self._aborted.clear()
        self._aborted.add((peer, msg.text("nonce", 32)))  # only its proposer's abort counts for a proposal
        if p is None or peer != p.proposer or msg.text("nonce", 32) != p.nonce:
            return
        if self._approved_transition(p) and self._candidates(p.epoch):
            # a signed transition cannot be called back: the proposer may broadcast it all the same
            log.warning(
                "the proposer aborts the change to epoch %d, but this member approved its transition: it keeps "
                "the change until the chain shows the transition confirmed or no longer possible",
                p.epoch,
            )
            return
        self._drop(f"the proposer aborted: {msg.text('reason', 500)}")

    def _approved_transition(self, p: Proposal) -> bool:
        return self.member.store.get_meta(f"transition_judged_nonce:{p.epoch}") == p.nonce

    async def tick(self) -> None:
        """Activate the next epoch once its transition transaction has enough confirmations; propose
        the expulsion of a member offline for longer than `expel_after_seconds`."""
        member = self.member
        self._watch()
        p = self.proposal
        if p is None:
            self._maybe_expel()
            if time.monotonic() - self._last_recover_check > 5:
                self._last_recover_check = time.monotonic()
                dropped = await asyncio.to_thread(self.dropped_change_on_chain)
                if dropped is not None and self.proposal is None:
                    self.take_over(*dropped)
            if time.monotonic() - self._last_sweep_check > 30:
                self._last_sweep_check = time.monotonic()
                await asyncio.to_thread(self.sweep_check)
        if p is None or member.chain is None:
            return
        if not self._candidates(p.epoch):
            stale = time.monotonic() - self._adopted_at > 2 * self.settings.change_timeout_seconds
            if stale and p.proposer != member.me:
                self._drop("the change never completed (its proposer went silent)", forget_key=False)
            elif stale and not self._proposing:  # this member proposed it, then restarted
                targets = sorted(set(p.members) - {member.me})
                await self._abort(targets, "the proposer restarted before the change completed")
            return
        found = await asyncio.to_thread(self._find_transition, p)
        if found is not None:
            self._activate(p, *found)
        elif time.monotonic() - self._last_dead_check > 15:
            self._last_dead_check = time.monotonic()
            dead = await asyncio.to_thread(self._transition_impossible, p)
            if dead is not None and self.proposal is p:
                self._give_up(p, "transition_impossible", f"its transition can no longer confirm: {dead}")

    def _transition_impossible(self, p: Proposal) -> str | None:
        """Why no transition of `p` can confirm any more, if this member's own chain shows it, and no
        candidate transaction is in a block since it was named or in the mempool: a coin the transition
        this member approved spends is gone, or the anchor the change started from was spent (deep
        enough) by a payout of the old epoch, which every transition built before it also spends. A
        transaction id named by a proposer who never had it signed thus times out too."""
        chain = self.member.chain
        assert chain is not None
        raw = self.member.store.get_meta(f"transition_judged:{p.epoch}")
        try:
            why = None
            if raw and self._approved_transition(p) and any(chain.get_utxo(t, v) is None for t, v in json.loads(raw)):
                why = "a coin it spends was spent by another transaction"
            why = why or self._anchor_spent_elsewhere(p)
            if why is None:
                return None
            candidates = self._candidates(p.epoch)
            if any(chain.get_utxo(txid, 0) is not None for txid in candidates):
                return None  # in the mempool, or confirmed and not yet spent
            tip = chain.tip_height()
            for txid, since in candidates.items():
                for height in range(max(since - 1, tip - 2000, 0), tip + 1):
                    if any(b2lx(t.GetTxid()) == txid for t in chain.block_transactions(height)):
                        return None
        except ChainError:
            return None
        return why

    def _anchor_spent_elsewhere(self, p: Proposal) -> str | None:
        """The old epoch's anchor when this member took part in `p`, spent at least DEAD_AFTER_BLOCKS
        deep by a transaction that paid its change back to the old epoch (it made the next anchor): a
        payout, never a transition, which pays nothing back."""
        member = self.member
        old = member.keys
        if old is None:
            return None
        member.chain_view.refresh()
        index = member.chain_view.index
        raw = member.store.get_meta(f"transition_anchor:{p.epoch}")
        if not raw:  # this member's index did not know the anchor yet when it took part: from now on
            first = index.anchor(old.epoch).outpoint
            member.store.set_meta(f"transition_anchor:{p.epoch}", json.dumps(first) if first else "")
            return None
        txid, vout = json.loads(raw)
        spender = index.spender((txid, vout))
        if spender is None or not any(a[0] == spender for a in index.anchors(old.epoch)):
            return None
        height = dict(index.federation_txids()).get(spender)
        need = max(DEAD_AFTER_BLOCKS, self.settings.transition_confirmations)
        if height is None or index.tip_height() - height + 1 < need:
            return None
        return f"epoch {old.epoch}'s anchor {txid}:{vout} was spent by the payout {spender}, {need}+ blocks deep"

    def abort_change(self, reason: str | None = None) -> dict[str, Any]:
        """The operator's own decision to stop taking part in the change in progress (a proposer that
        named a transaction which never confirms holds every later change up). Local: nothing is sent;
        this member refuses that change's transition from now on, and keeps its share of the new key
        aside in case the transition confirms all the same."""
        p = self.proposal
        if p is None:
            raise MembershipError("no membership change is in progress at this member")
        why = f"aborted by this member's operator: {reason or 'no reason given'}"
        self._give_up(p, "operator_abort", why)
        return {
            "aborted": {"epoch": p.epoch, "kind": p.kind, "subject": p.subject.hex(), "nonce": p.nonce},
            "reason": why,
        }

    def _give_up(self, p: Proposal, code: str, reason: str) -> None:
        """Drop `p` for good at this member: its share set aside with the change (out of the epochs, so
        a later change to the same epoch runs a DKG of its own), the reason recorded, and the change
        refused if proposed or asked to sign again."""
        store = self.member.store
        rec = store.epoch(p.epoch)
        with store.transaction():
            store.set_meta(_dropped_key(p), reason[:500])
            if rec is not None and rec.status == "pending" and store.get_meta(f"pending_nonce:{p.epoch}") == p.nonce:
                raw = store.get_meta(f"abandoned:{p.epoch}")
                kept = [e for e in (json.loads(raw) if raw else []) if e["proposal"]["nonce"] != p.nonce]
                kept.append({"proposal": p.to_body(), "record": _record_json(rec)})
                store.set_meta(f"abandoned:{p.epoch}", json.dumps(kept[-16:]))
                store.delete_epoch(p.epoch)  # else the next change's DKG would end with this key
        store.record_refusal("dropped", p.to_body(), code, reason)
        self._drop(reason, forget_key=False)

    def _find_transition(self, p: Proposal) -> tuple[str, bool] | None:
        """The confirmed transaction among the candidates that is the transition: it spends the old
        epoch's anchor coin (so the old epoch's members signed it, whoever named it), pays this member's
        own new key at output 0 (a member leaving: pays nothing back to the old epoch) and spends every
        coin this member approved spending. Returns whether this member judged it (None: none found
        yet). Looks in the blocks since it first heard of a candidate, so it finds the transaction even
        once the new epoch has spent its output."""
        member = self.member
        chain = member.chain
        assert chain is not None
        tip = chain.tip_height()
        member.store.set_meta("last_tip", str(tip))
        rec = member.store.epoch(p.epoch)
        if rec is None and member.me in p.members:
            return None  # without its share of the new key this member cannot take part in the epoch
        old = member.keys  # None: a joiner, which has no coins of the old epoch to lose
        anchors: set[tuple[str, int]] = set()
        if old is not None:
            member.chain_view.refresh()
            anchors = member.chain_view.index.anchors(old.epoch)
        expected = None
        if rec is not None:
            new_keys = EpochKeys(p.epoch, p.members, p.threshold, rec.group_key, rec.chain_code, [], member.network)
            expected = new_keys.script(TRANSITION_PATH)
        raw_judged = member.store.get_meta(f"transition_judged:{p.epoch}")
        judged = {tuple(o) for o in json.loads(raw_judged)} if raw_judged else None
        need = self.settings.transition_confirmations
        raw_tx = member.store.get_meta(f"transition_tx:{p.epoch}")
        for txid, since in self._candidates(p.epoch).items():
            start = max(since - 1, tip - 2000, 0) if since else max(tip - 2000, 0)
            for height in range(start, tip - need + 2):
                tx = next((t for t in chain.block_transactions(height) if b2lx(t.GetTxid()) == txid), None)
                if tx is None:
                    continue
                if expected is not None and (not tx.vout or bytes(tx.vout[0].scriptPubKey) != expected):
                    log.warning("transaction %s does not pay epoch %d's key; ignored", txid, p.epoch)
                    break
                spent = {(b2lx(i.prevout.hash), i.prevout.n) for i in tx.vin}
                if judged is not None and not judged <= spent:
                    log.warning("transaction %s is not the transition this member signed; ignored", txid)
                    break
                if old is None:
                    return txid, judged is not None
                if not anchors & spent:  # only the epoch's members can have signed a spend of its anchor
                    log.warning("transaction %s does not spend epoch %d's anchor coin; ignored", txid, old.epoch)
                    break
                if expected is None and any(
                    (found := member.chain_view.index.path_of(bytes(o.scriptPubKey))) and found[0] == old.epoch
                    for o in tx.vout
                ):  # a payout of the old epoch (it pays change back), not a transition
                    log.warning("transaction %s pays epoch %d back; not a transition", txid, old.epoch)
                    break
                return txid, judged is not None
        if raw_tx:  # signed, perhaps never broadcast: try again
            with contextlib.suppress(ChainError, ValueError):
                chain.broadcast(CTransaction.deserialize(bytes.fromhex(raw_tx)))
        return None

    def sweep_check(self) -> None:
        """Delete a retired epoch's share once the chain index shows no coin left at any of its
        addresses (every index ever used, and the look-ahead past them), and only if this member checked
        the transition that retired it. Until then the share stays sealed in the store: the old epoch's
        members can still move what is left (a young coinbase, a late payment)."""
        member = self.member
        store = member.store
        if member.chain is None:
            return
        try:
            member.chain_view.refresh()
        except ChainError:
            self._last_sweep_check = time.monotonic() - 25  # try again in a few seconds
            return
        for rec in store.epochs():
            if rec.status != "retired" or rec.sealed_share is None or not store.get_meta(f"retired_judged:{rec.epoch}"):
                continue
            if rec.epoch not in member.chain_view.index.watched_epochs() or member.chain_view.coins(rec.epoch):
                continue
            store.save_epoch(EpochRecord(**{**rec.__dict__, "sealed_share": None}))
            store.scrub()
            log.info("epoch %d holds no coin any more: its key share is deleted", rec.epoch)

    def hint(self, peer: PeerId, epoch: int, txid: str) -> None:
        """A member of the proposed epoch runs it already: take its transaction id as a hint, if this
        member took part in that epoch's DKG and never heard the proposer's `tdone`."""
        p = self.proposal
        store = self.member.store
        if p is None or p.epoch != epoch or peer not in p.members or store.epoch(epoch) is None:
            return
        if not store.get_meta(f"transition_judged:{epoch}"):
            return  # without the inputs it checked itself, only the proposer's word counts
        try:
            bytes.fromhex(txid)
        except ValueError:
            return
        self._record_txid(epoch, txid, hinted_by=peer)

    def _maybe_expel(self) -> None:
        """Only the first online member (in member order) proposes, so members do not race."""
        member = self.member
        keys = member.keys
        limit = self.settings.expel_after_seconds
        if limit <= 0 or keys is None or (self._expelling is not None and not self._expelling.done()):
            return
        online = [m for m in keys.members if member.online(m)]
        if not online or online[0] != member.me:
            return
        margin = member.offline_after_seconds  # the others' clocks may lag this one's by a heartbeat or so
        for m in keys.members:
            if m != member.me and self.clock.seconds(m) >= limit + margin:
                self._expelling = member._spawn(self._expel_quietly(m, limit))
                return

    async def _expel_quietly(self, target: PeerId, limit: float) -> None:
        try:
            await self.propose("expel", target)
        except MembershipError as e:
            if str(e) != self._expel_error:  # said once, not at every heartbeat
                log.warning("automatic expulsion of %s (offline > %.0f s) failed: %s", target.hex()[:16], limit, e)
            self._expel_error = str(e)
        else:
            self._expel_error = None

    def _activate(self, p: Proposal, txid: str, judged: bool) -> None:
        """The new epoch takes over. The old epoch's share is kept (sealed) for now: coins may still
        sit at its addresses (a young coinbase, a late payment); `sweep_check` deletes it once none
        do, and only if this member checked the transition itself."""
        member = self.member
        store = member.store
        old = store.active_epoch()
        new = store.epoch(p.epoch)
        leaving = new is None or member.me not in p.members
        with store.transaction():  # a crash leaves either the old epoch active or the new one
            store.set_meta("last_change_height", str(self._tip_hint()))
            store.set_meta("last_change_time", str(time.time()))
            if p.kind in ("join", "expel"):
                store.withdraw_approval(p.kind, p.subject)  # used: a later change asks the operator again
            if old is not None:
                store.save_epoch(EpochRecord(**{**old.__dict__, "status": "retired"}))
                store.set_meta(f"retired_judged:{old.epoch}", "1" if judged else "")
            store.set_meta("proposal", "")
            if leaving:
                store.set_meta("left_at_epoch", str(p.epoch))
            else:
                assert new is not None
                rec = EpochRecord(**{**new.__dict__, "status": "active", "activation_txid": txid})
                store.save_epoch(rec)
        self.proposal = None
        self._last_sweep_check = 0.0  # look at the old epoch's addresses soon
        if leaving:
            member.keys = None
            member.members = []
            log.info("epoch %d is active without this member: it has left the federation", p.epoch)
            return
        member._activate(rec)
        log.info(
            "epoch %d active: %d members, t = %d, key %s", p.epoch, len(p.members), p.threshold, rec.group_key.hex()
        )

    # -- a signer's checks -----------------------------------------------------------------------

    def transition_tasks(self, req: SigningRequest) -> list[SigningTask]:
        """Everything a member of the current epoch checks before it signs a transition; a refusal is
        recorded with its reason."""
        try:
            return self._transition_tasks(req)
        except PolicyRejection as e:
            body = (req.transition or {}).get("proposal")
            if isinstance(body, dict):
                with contextlib.suppress(TypeError, ValueError):
                    self.member.store.record_refusal("transition", body, e.code, e.message)
            raise

    def _transition_tasks(self, req: SigningRequest) -> list[SigningTask]:
        member = self.member
        keys = member.keys
        if keys is None or member.chain is None or req.transition is None:
            raise PolicyRejection("no_epoch", "this member has no active epoch or chain source")
        t = req.transition
        rules = member.policy_settings
        try:
            p = Proposal.from_message(Message("tprop", t.get("proposal", {})))
            recovery = bytes.fromhex(str(t.get("recovery", "")))
            bond_key = bytes.fromhex(str(t.get("bond_key", ""))) or None
        except (MessageError, ValueError) as e:
            raise PolicyRejection("malformed", f"the transition request is malformed: {e}") from None
        try:
            check_proposal(p, keys, self.settings, member.chain.tip_height())
        except ProposalRefused as e:
            raise PolicyRejection("bad_proposal", str(e)) from None
        if dropped := member.store.get_meta(_dropped_key(p)):
            raise PolicyRejection("change_dropped", f"this member dropped this change: {dropped}")
        adopted = self.proposal
        if adopted is None or adopted.to_body() != p.to_body():
            raise PolicyRejection(
                "not_this_change",
                "this member takes part in no such change (it refused it, it was aborted, or it never heard of it)",
            )
        group_key = verify_new_epoch_key(recovery, p, self.known_hostkeys())
        if member.me in p.members:
            mine = member.store.epoch(p.epoch)
            ours = member.store.get_meta(f"pending_nonce:{p.epoch}") == p.nonce
            if (
                mine is None
                or mine.status != "pending"
                or not ours
                or mine.group_key != group_key
                or mine.chain_code != chain_code_of(recovery)  # the addresses this member will watch
            ):
                raise PolicyRejection(
                    "bad_epoch_key", "the new key is not one this member holds a share of from this change's DKG"
                )
        elif p.proposer != member.me or self._accepted_key != (p.nonce, group_key):
            raise PolicyRejection(
                "not_in_new_epoch", "this member is not in the new epoch and signs only the leave it proposed itself"
            )
        new_keys = EpochKeys(p.epoch, p.members, p.threshold, group_key, chain_code_of(recovery), [], keys.network)
        spent = check_transition_tx(
            req.tx,
            dict(req.fed_inputs),
            keys,
            new_keys.script(TRANSITION_PATH),
            p,
            member.chain,
            self.settings,
            member.policy_settings.min_confirmations,
            bond_key,
            Standardness(rules.allow_version_3, rules.allow_op_return, rules.allow_consolidation),
            rules.min_feerate,
        )
        member.chain_view.refresh()  # a transition spends the anchor like every other transaction
        outpoints = [(b2lx(i.prevout.hash), i.prevout.n) for i in req.tx.vin]
        member.chain_view.require_anchor(keys, outpoints)
        self._check_every_coin_moved(keys, outpoints)
        tasks = tasks_for_inputs(keys, req, spent)
        judged = sorted([b2lx(req.tx.vin[i].prevout.hash), req.tx.vin[i].prevout.n] for i, _ in req.fed_inputs)
        with member.store.transaction():
            member.store.set_meta(f"transition_judged:{p.epoch}", json.dumps(judged))
            member.store.set_meta(f"transition_judged_nonce:{p.epoch}", p.nonce)
        if len(req.fed_inputs) == len(req.tx.vin):  # key-path inputs only: the txid is the final one
            self._record_txid(p.epoch, b2lx(req.tx.GetTxid()))
        return tasks

    def _check_every_coin_moved(self, keys: EpochKeys, outpoints: list[tuple[str, int]]) -> None:
        """A transition moves every spendable coin of the epoch: once the next epoch is active no member
        signs for the old key, so a coin left behind would be stranded. A coin that confirmed in the
        last block may be missing (the proposer built the transaction a moment earlier)."""
        view = self.member.chain_view
        tip = view.index.tip_height()
        need = self.member.policy_settings.min_confirmations
        spent = set(outpoints)
        left = [
            c
            for c in view.coins(keys.epoch)
            if c.outpoint not in spent and c.confirmations(tip) > (COINBASE_MATURITY if c.coinbase else need)
        ]
        if left:
            names = ", ".join(f"{c.txid}:{c.vout}" for c in left[:5])
            raise PolicyRejection(
                "coins_left_behind",
                f"the transition leaves {len(left)} coin(s) of {sum(c.sats for c in left)} sats at epoch "
                f"{keys.epoch}'s key ({names}); every spendable coin moves to the new epoch",
            )

    def status(self) -> dict[str, Any]:
        p = self.proposal
        return {
            "in_progress": None
            if p is None
            else {
                "epoch": p.epoch,
                "kind": p.kind,
                "subject": p.subject.hex(),
                "proposer": p.proposer.hex(),
                "members": len(p.members),
                "threshold": p.threshold,
                "transition_txid": self.member.store.get_meta(f"transition_txid:{p.epoch}") or None,
            },
            "last_error": self.last_error,
        }


def _dropped_key(p: Proposal) -> str:
    return f"dropped_change:{p.proposer.hex()}:{p.nonce}"


def _record_json(rec: EpochRecord) -> dict[str, Any]:
    return {
        "epoch": rec.epoch,
        "members": [m.hex() for m in rec.members],
        "threshold": rec.threshold,
        "group_key": rec.group_key.hex(),
        "chain_code": rec.chain_code.hex(),
        "pubshares": [x.hex() for x in rec.pubshares],
        "recovery": rec.recovery.hex(),
        "sealed_share": rec.sealed_share.hex() if rec.sealed_share else None,
    }


def _record_of(raw: dict[str, Any]) -> EpochRecord:
    """A set-aside record back, as the pending share it was."""
    return EpochRecord(
        epoch=int(raw["epoch"]),
        status="pending",
        members=[bytes.fromhex(m) for m in raw["members"]],
        threshold=int(raw["threshold"]),
        group_key=bytes.fromhex(raw["group_key"]),
        chain_code=bytes.fromhex(raw["chain_code"]),
        pubshares=[bytes.fromhex(x) for x in raw["pubshares"]],
        recovery=bytes.fromhex(raw["recovery"]),
        sealed_share=bytes.fromhex(raw["sealed_share"]) if raw["sealed_share"] else None,
    )

"""ROAST signing among the members, over the network: a member coordinating a request and a member
signing one.

The coordinator drives the sans-I/O `RoastCoordinator` of `frost/`; each signer drives a
`RoastSigner`. Two rules hold whatever the network does: a member signs only what its own policy
accepted on its own chain data, and a nonce is journalled as used before a partial signature made
with it is sent.

Messages: sreq (coordinator -> all: the request), sready / srej (the first presignature, or the
reason for refusing), ssess (coordinator -> a session's signers), sshare (a partial signature per
input and the next presignature), sdone (coordinator -> all: the outcome).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bitcoin.core import CTransaction, CTxIn, b2lx
from bitcoin.core.script import CScript

from frostfed.bitcoin.chain import ChainError
from frostfed.bitcoin.fee_budget import FeeBudget
from frostfed.bitcoin.policy import (
    ChainChecks,
    CommandPolicy,
    FeeBounds,
    LedgerPolicy,
    PayoutPolicy,
    Policy,
    PolicyRejection,
    Standardness,
)
from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, keypath_witness_stack, with_keypath_witnesses
from frostfed.federation.chain_view import AnchorPolicy, ChainRefresh
from frostfed.federation.compact import decode_nonces, encode_nonces
from frostfed.federation.fee_bump import replacement_policy
from frostfed.federation.messages import Message, MessageError
from frostfed.federation.signing_request import (
    SigningRequest,
    check_psbt,
    federation_scripts,
    judge,
    signing_tasks,
)
from frostfed.federation.store import NonceReuseError
from frostfed.frost.roast import (
    Presignature,
    RoastCoordinator,
    RoastSigner,
    SessionRequest,
    SignerReply,
    SignerSession,
    SigningTask,
)
from frostfed.frost.secp import schnorr_verify
from frostfed.net.channel import PeerId

if TYPE_CHECKING:
    from frostfed.federation.node import Member

log = logging.getLogger(__name__)

CLOCK_SKEW = 30.0
"""Seconds a member's clock may be behind the coordinator's before a request it still could sign is dropped."""


class SigningError(Exception):
    """A request ended without a signature; `outcome` says why, member by member."""

    def __init__(self, message: str, outcome: dict[str, Any]) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class _Coordination:
    """A request this member coordinates."""

    request: SigningRequest
    roast: RoastCoordinator
    tasks: list[SigningTask]
    done: asyncio.Future[dict[str, Any]]
    rejections: dict[str, str] = field(default_factory=dict)
    answered: set[int] = field(default_factory=set)
    extra_inputs: dict[int, tuple[bytes, list[bytes]]] = field(default_factory=dict)


@dataclass
class _Signing:
    """A request this member agreed to sign."""

    request: SigningRequest
    signer: RoastSigner
    coordinator: PeerId
    pubnonce_key: bytes  # journal key of the outstanding presignature
    signed: bool = False  # a partial signature has left this member


def _journal_key(pubnonces: tuple[bytes, ...]) -> bytes:
    return b"".join(pubnonces)


MAX_SESSION_ID = 2**31


def _session_request(msg: Message, ntasks: int) -> SignerSession:
    """An ssess message as a SignerSession: types and counts here, ids and nonces in
    `RoastSigner.check_session`."""
    sid = msg.integer("sid", 0, MAX_SESSION_ID)
    signers = msg.get("signers", list)
    if not all(type(i) is int for i in signers):
        raise MessageError("ssess: signer ids must be whole numbers")
    return SignerSession(sid, tuple(signers), decode_nonces(msg, "aggnonces", ntasks))


class RoastSigning:
    def __init__(self, member: Member) -> None:
        self.member = member
        self._coordinating: dict[str, _Coordination] = {}
        self._signing: dict[str, _Signing] = {}
        self._judged: dict[str, list[SigningTask]] = {}
        self._judging: set[str] = set()
        self._fee_budget: FeeBudget | None = None
        self.handlers: dict[str, Callable[[PeerId, Message], Any]] = {
            "sreq": self._on_sign_request,
            "sready": self._on_sign_ready,
            "srej": self._on_sign_reject,
            "ssess": self._on_sign_session,
            "sshare": self._on_sign_share,
            "sdone": self._on_sign_done,
        }

    def close(self) -> None:
        for c in self._coordinating.values():
            if not c.done.done():
                c.done.cancel()
        if self._fee_budget is not None:
            self._fee_budget.close()
            self._fee_budget = None

    # -- policy ----------------------------------------------------------------------------------

    def build_policy(self, req: SigningRequest) -> PayoutPolicy:
        if self.member.chain is None:
            raise ChainError("this member has no chain source")
        assert self.member.keys is not None
        s = self.member.policy_settings
        checks = ChainChecks(
            self.member.chain,
            federation_scripts(self.member.keys, req),
            FeeBounds(s.min_feerate, s.max_feerate, s.max_fee_sats),
            s.min_confirmations,
            standardness=Standardness(s.allow_version_3, s.allow_op_return, s.allow_consolidation),
        )
        if self._fee_budget is None:  # its journal is a table of the member's own database
            self._fee_budget = FeeBudget(
                self.member.store.path,
                s.fee_budget_sats,
                s.fee_budget_blocks,
                chain_fees=self.member.chain_view.index.fees_since,  # what the chain shows burnt, by anyone
            )
        policies: list[Policy] = [ChainRefresh(self.member.chain_view)]
        if self.member.ledger is not None:
            policies.append(LedgerPolicy(self.member.ledger, self.member.network))
        if req.kind in ("payout", "psbt", "bump"):  # a transition is held to the anchor by its own checks
            policies.append(AnchorPolicy(self.member.chain_view, self.member.keys, req, refresh=False))
        if s.payout_check_command:
            policies.append(CommandPolicy(s.payout_check_command, self.member.network))
        policies += self.member.extra_policies
        policies.append(self._fee_budget)  # last: a refusal names the payout's own fault first
        if req.kind == "bump":  # judged as a replacement of this member's own record of the payout
            return replacement_policy(self.member, req, PayoutPolicy(checks, policies), self._fee_budget)
        return PayoutPolicy(checks, policies)

    # -- signing: coordinator --------------------------------------------------------------------

    async def request_signatures(
        self, req: SigningRequest, extra_inputs: dict[int, tuple[bytes, list[bytes]]] | None = None
    ) -> dict[str, Any]:
        """Coordinate ROAST for `req` among the members; returns the outcome with the signed tx.
        `extra_inputs` holds the finished (scriptSig, witness) of inputs that are not the federation's."""
        if self.member.keys is None:
            raise SigningError("no active epoch yet", {"status": "failed"})
        keys = self.member.keys
        if req.deadline is None:  # members that get it later than this drop it (the coordinator gave up)
            req = dataclasses.replace(req, deadline=int(time.time() + self.member.request_timeout) + 1)
        # The coordinator needs the sighashes, which only the chain's view of the inputs gives.
        try:
            if req.kind == "transition":
                tasks = await asyncio.to_thread(self.member.membership.transition_tasks, req)
            else:
                chain_checks = self.build_policy(req).chain_checks
                payout = await asyncio.to_thread(chain_checks.check, req.tx)
                check_psbt(req, payout)
                tasks = signing_tasks(keys, req, payout)
        except PolicyRejection as e:
            outcome = {"status": "rejected", "rejections": {self.member.me.hex(): f"{e.code}: {e.message}"}}
            self.member.store.save_request(req.id, req.kind, self.member.me, "rejected", req.to_body(), outcome)
            raise SigningError(f"this member refuses the request: {e.message}", outcome) from None
        loop = asyncio.get_running_loop()
        coord = _Coordination(req, RoastCoordinator(keys.roast_key, tasks), tasks, loop.create_future())
        coord.extra_inputs = dict(extra_inputs or {})
        self._coordinating[req.id] = coord
        self.member.store.save_request(req.id, req.kind, self.member.me, "signing", req.to_body())
        await self.member._send_all("sreq", req.to_body())
        try:
            outcome = await asyncio.wait_for(asyncio.shield(coord.done), self.member.request_timeout)
        except TimeoutError:
            if coord.roast.result is not None and coord.roast.result.ok:
                outcome = await coord.done  # signed: finishing (the broadcast) is under way
            else:
                result = coord.roast.give_up("timed out waiting for enough members")
                outcome = self._failure_outcome(coord, result.reason)
        finally:
            self._coordinating.pop(req.id, None)
        own = self._signing.pop(req.id, None)  # this member's own signer state for the request
        self._judged.pop(req.id, None)
        if own is not None:
            self._settle(own, outcome["status"])
        self.member.store.update_request(req.id, outcome["status"], outcome)
        await self.member._send_all_others(
            "sdone", {"id": req.id, "status": outcome["status"], "txid": outcome.get("txid", "")}
        )
        if outcome["status"] not in ("signed", "broadcast"):
            raise SigningError(outcome.get("reason", "signing failed"), outcome)
        return outcome

    def _failure_outcome(self, coord: _Coordination, reason: str) -> dict[str, Any]:
        keys = self.member.keys
        assert keys is not None
        malicious = sorted(keys.members[i].hex() for i in coord.roast.malicious)
        return {
            "status": "rejected" if coord.rejections else "failed",
            "reason": reason,
            "rejections": dict(coord.rejections),
            "malicious": malicious,
            "sessions": coord.roast.sessions_started,
        }

    def _coordination_for(self, peer: PeerId, msg: Message) -> tuple[_Coordination, int] | None:
        rid = msg.text("id", 64)
        coord = self._coordinating.get(rid)
        if coord is None or self.member.keys is None:
            return None
        idx = self.member.keys.member_index(peer)
        if idx is None:
            return None
        return coord, idx

    def _on_sign_ready(self, peer: PeerId, msg: Message) -> None:
        found = self._coordination_for(peer, msg)
        if found is None:
            return
        coord, idx = found
        pubnonces = tuple(msg.hexlist("pubnonces", 66, max_items=len(coord.tasks)))
        coord.answered.add(idx)
        self._roast_outputs(coord, coord.roast.receive_presignature(Presignature(idx, pubnonces)))

    def _on_sign_reject(self, peer: PeerId, msg: Message) -> None:
        found = self._coordination_for(peer, msg)
        if found is None:
            return
        coord, idx = found
        coord.answered.add(idx)
        coord.rejections[peer.hex()] = msg.text("reason", 1000)
        keys = self.member.keys
        assert keys is not None
        if len(coord.rejections) > keys.roast_key.n - keys.threshold and not coord.done.done():
            n_rej = len(coord.rejections)
            coord.roast.give_up("rejected by the policy")
            coord.done.set_result(
                self._failure_outcome(
                    coord,
                    f"{n_rej} of {keys.roast_key.n} members refuse; {keys.threshold} signatures are needed",
                )
            )

    def _on_sign_share(self, peer: PeerId, msg: Message) -> None:
        found = self._coordination_for(peer, msg)
        if found is None:
            return
        coord, idx = found
        reply = SignerReply(
            msg.integer("sid", 0, MAX_SESSION_ID),
            idx,
            tuple(msg.hexlist("psigs", 32, max_items=len(coord.tasks))),
            tuple(msg.hexlist("next", 66, max_items=len(coord.tasks))),
        )
        self._roast_outputs(coord, coord.roast.receive_reply(reply))

    def _roast_outputs(self, coord: _Coordination, sends: list[Any]) -> None:
        keys = self.member.keys
        assert keys is not None
        for send in sends:
            r: SessionRequest = send.request
            body = {
                "id": coord.request.id,
                "sid": r.sid,
                "signers": list(r.signer_ids),
                "aggnonces": encode_nonces(r.signer_session().aggnonces),
            }
            self.member._spawn(self.member._send(keys.members[send.to], "ssess", body))
        result = coord.roast.result
        if result is None or coord.done.done():
            return
        if not result.ok:
            coord.done.set_result(self._failure_outcome(coord, result.reason or "too many faulty signers"))
            return
        self.member._spawn(self._finish(coord))

    async def _finish(self, coord: _Coordination) -> None:
        keys = self.member.keys
        assert keys is not None
        result = coord.roast.result
        assert result is not None and result.signatures is not None
        req = coord.request
        stacks = {i: witness for i, (_, witness) in coord.extra_inputs.items()}
        for (i, path), task, sig in zip(req.fed_inputs, coord.tasks, result.signatures, strict=True):
            if not schnorr_verify(task.msg, keys.output_key(path), sig):
                coord.done.set_result(self._failure_outcome(coord, f"aggregate signature {i} does not verify"))
                return
            stacks[i] = keypath_witness_stack(sig, SIGHASH_DEFAULT)
        signed = with_keypath_witnesses(req.tx, stacks)
        if any(script_sig for script_sig, _ in coord.extra_inputs.values()):
            vin = [
                CTxIn(txin.prevout, CScript(coord.extra_inputs.get(i, (b"", []))[0]), txin.nSequence)
                for i, txin in enumerate(signed.vin)
            ]
            signed = CTransaction(vin, signed.vout, signed.nLockTime, signed.nVersion, signed.wit)
        outcome: dict[str, Any] = {
            "status": "signed",
            "txid": b2lx(signed.GetTxid()),
            "tx": signed.serialize().hex(),
            "signatures": [s.hex() for s in result.signatures],
            "signers": [keys.members[i].hex() for i in result.signer_ids],
            "malicious": sorted(keys.members[i].hex() for i in result.malicious),
            "sessions": result.sessions_started,
            "rejections": dict(coord.rejections),
        }
        if req.kind in ("payout", "transition", "bump") and self.member.chain is not None:
            try:
                await asyncio.to_thread(self.member.chain.broadcast, signed)
                outcome["status"] = "broadcast"
            except ChainError as e:
                outcome["status"] = "failed"
                outcome["reason"] = f"signed, but the broadcast failed: {e}"
        if not coord.done.done():
            coord.done.set_result(outcome)

    # -- signing: signer -------------------------------------------------------------------------

    async def _on_sign_request(self, peer: PeerId, msg: Message) -> None:
        req = SigningRequest.from_message(msg)
        member = self.member
        if member.keys is not None and member.keys.member_index(peer) is None:
            return  # only a member of the current epoch coordinates its signing
        if req.id in self._signing or req.id in self._judging or (peer != member.me and member.store.requests(req.id)):
            return  # a repeated request: answered once only
        self._judging.add(req.id)  # before the first await: a duplicate arriving meanwhile is dropped
        try:
            if await self._late(peer, req):
                return
            await self._answer_request(peer, req)
        finally:
            self._judging.discard(req.id)

    async def _late(self, peer: PeerId, req: SigningRequest) -> bool:
        """A request past its deadline or already settled on chain (a member back from being offline gets
        the queued copies): dropped quietly, neither judged nor answered nor recorded."""
        if req.deadline is not None and time.time() > req.deadline + CLOCK_SKEW:
            log.info("request %s from %s is past its deadline: dropped", req.id, peer.hex()[:16])
            return True
        view = self.member.chain_view
        try:
            await asyncio.to_thread(view.refresh)
        except ChainError:
            return False  # judged as usual: a check without the chain refuses
        for txin in req.tx.vin:  # any input spent on chain: the request confirmed, or never can
            outpoint = (b2lx(txin.prevout.hash), txin.prevout.n)
            spender = view.index.spender(outpoint)
            if spender is not None:
                log.info(
                    "request %s from %s is settled on chain (%s:%d spent by %s): dropped",
                    req.id,
                    peer.hex()[:16],
                    *outpoint,
                    spender,
                )
                return True
        return False

    async def _answer_request(self, peer: PeerId, req: SigningRequest) -> None:
        reason = await self._check_request(req)
        if reason is not None:
            log.info("request %s from %s refused: %s", req.id, peer.hex()[:16], reason)
            if peer != self.member.me:
                self.member.store.save_request(req.id, req.kind, peer, "refused", req.to_body(), {"reason": reason})
            await self.member._send(peer, "srej", {"id": req.id, "reason": reason})
            return
        tasks = self._judged.pop(req.id)
        assert self.member.keys is not None and self.member._secshare is not None
        my_id = self.member.keys.member_index(self.member.me)
        assert my_id is not None
        signer = RoastSigner(self.member.keys.roast_key, my_id, self.member._secshare, tasks)
        pre = signer.presign()
        key = _journal_key(pre.pubnonces)
        accepted = None if peer == self.member.me else req.to_body()  # saved with the nonce, in one write
        self.member.store.issue_nonce_for(key, req.id, req.kind, peer, accepted)
        self._signing[req.id] = _Signing(req, signer, peer, key)
        if "slow-ready" in self.member.faults:  # test fault: a member that answers requests late
            await asyncio.sleep(1)
        await self.member._send(peer, "sready", {"id": req.id, "pubnonces": [p.hex() for p in pre.pubnonces]})

    async def _check_request(self, req: SigningRequest) -> str | None:
        """None if this member will sign `req`, else the reason it refuses."""
        if self.member.keys is None or self.member._secshare is None:
            return "no active epoch"
        if req.epoch != self.member.keys.epoch:
            await self.member.membership.tick()  # perhaps the next epoch has just become active
        if req.epoch != self.member.keys.epoch:
            return f"request is for epoch {req.epoch}, this member is in epoch {self.member.keys.epoch}"
        try:
            if req.kind == "transition":
                self._judged[req.id] = await asyncio.to_thread(self.member.membership.transition_tasks, req)
            else:
                policy = self.build_policy(req)
                self._judged[req.id] = await asyncio.to_thread(judge, self.member.keys, req, policy)
        except PolicyRejection as e:
            return f"{e.code}: {e.message}"
        except ChainError as e:
            return f"chain_unavailable: {e}"
        except Exception as e:  # a check that breaks is a refusal, never a signature
            log.exception("policy check failed")
            return f"check_failed: {type(e).__name__}: {e}"
        return None

    async def _on_sign_session(self, peer: PeerId, msg: Message) -> None:
        rid = msg.text("id", 64)
        state = self._signing.get(rid)
        if state is None or peer != state.coordinator:
            return
        try:  # every field checked before the nonce journal is touched
            request = _session_request(msg, len(state.signer.tasks))
            state.signer.check_session(request)
        except (MessageError, ValueError) as e:
            log.warning("session %s/%s from %s refused: %s", rid, msg.body.get("sid"), peer.hex()[:16], e)
            return
        try:
            reply = state.signer.on_session(request)  # in memory only: nothing leaves before the journal says used
        except ValueError as e:
            log.warning("session %s/%d could not be signed: %s", rid, request.sid, e)
            return
        next_key = _journal_key(reply.next_pubnonces)
        try:  # one durable write: this nonce used, the next presignature issued
            self.member.store.use_nonce_and_issue(state.pubnonce_key, next_key, rid)
        except NonceReuseError as e:
            log.error("session %s/%d refused: %s", rid, request.sid, e)
            return
        state.pubnonce_key = next_key
        state.signed = True
        psigs = list(reply.psigs)
        if "delay-psig" in self.member.faults:  # test fault: a member that stalls mid-signing
            await asyncio.sleep(3)
        if "bad-psig" in self.member.faults:
            psigs = [os.urandom(32) for _ in psigs]
        await self.member._send(
            peer,
            "sshare",
            {
                "id": rid,
                "sid": reply.sid,
                "psigs": [p.hex() for p in psigs],
                "next": [p.hex() for p in reply.next_pubnonces],
            },
        )

    def _on_sign_done(self, peer: PeerId, msg: Message) -> None:
        rid = msg.text("id", 64)
        state = self._signing.get(rid)
        if state is None or peer != state.coordinator:
            return
        del self._signing[rid]
        status = msg.text("status", 32)
        self._settle(state, status)
        self.member.store.update_request(rid, status, {"txid": msg.text("txid", 64)})

    def _settle(self, state: _Signing, status: str) -> None:
        """The request is over: its outstanding nonce is discarded. The ledger's reservation stays:
        only a confirmed transaction spending one of its inputs releases it (whatever a coordinator
        says, a partial signature of this member may exist, or others may still complete the
        request). A retry of the same debt spends the same anchor, so it replaces the reservation."""
        self.member.store.discard_nonce(state.pubnonce_key)

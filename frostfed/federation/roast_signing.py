"""ROAST signing among the members, over the network: a member coordinating a request (here) and a
member signing one (`roast_signer`).

The coordinator drives the sans-I/O `RoastCoordinator` of `frost/`; each signer drives a
`RoastSigner`. Two rules hold whatever the network does: a member signs only what its own policy
accepted on its own chain data, and a nonce is journalled as used before a partial signature made
with it is sent. The coordinator trusts no answer: every presignature and partial signature is
checked by the ROAST core, and the aggregate against the key of its path before it is broadcast.

Messages (see `messages.Kind`): sign_request (coordinator -> all), sign_ready / sign_reject (the
first presignature, or the reason for refusing), sign_session (coordinator -> a session's signers),
sign_share (a partial signature per input and the next presignature), sign_done (coordinator -> all).
What a request may be signed for is its kind's judge's decision (`signing_judges`), never this module's.
The coordinator's ROAST grace period (`Timing.roast_grace`, see `RoastCoordinator`) runs on the event
loop's clock: every message is handed to the core with its arrival time, and a timer calls `tick`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bitcoin.core import b2lx

from frostfed.bitcoin.chain import ChainError
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.federation.context import MemberContext
from frostfed.federation.messages import (
    Kind,
    Message,
    SignDone,
    SignReady,
    SignReject,
    SignSession,
    SignShare,
)
from frostfed.federation.roast_signer import SignerRole
from frostfed.federation.signing_judges import Judge
from frostfed.federation.signing_request import SigningRequest, signed_transaction
from frostfed.frost.roast import (
    Presignature,
    RoastCoordinator,
    SessionRequest,
    SignerReply,
    SigningTask,
)
from frostfed.net.channel import PeerId

log = logging.getLogger(__name__)

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
    finishing: bool = False  # the signature is complete: aggregated and broadcast once, whatever arrives later
    wake: asyncio.TimerHandle | None = None  # the `tick` at the end of the ROAST grace period


class RoastSigning(SignerRole):
    """Both sides of ROAST for one member: the requests it coordinates, and (from `SignerRole`) those
    it agreed to sign; a coordinator is also a signer of its own requests."""

    def __init__(
        self,
        ctx: MemberContext,
        judges: Mapping[str, Judge],
        catch_up: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(ctx, judges, catch_up)
        self._coordinating: dict[str, _Coordination] = {}
        self.handlers: dict[str, Callable[[PeerId, Message], Any]] = {
            Kind.SIGN_REQUEST: self._on_sign_request,
            Kind.SIGN_READY: self._on_sign_ready,
            Kind.SIGN_REJECT: self._on_sign_reject,
            Kind.SIGN_SESSION: self._on_sign_session,
            Kind.SIGN_SHARE: self._on_sign_share,
            Kind.SIGN_DONE: self._on_sign_done,
        }

    def close(self) -> None:
        for c in self._coordinating.values():
            if not c.done.done():
                c.done.cancel()
        for j in self.judges.values():
            j.close()

    # -- signing: coordinator --------------------------------------------------------------------

    async def request_signatures(
        self, req: SigningRequest, extra_inputs: dict[int, tuple[bytes, list[bytes]]] | None = None
    ) -> dict[str, Any]:
        """Coordinate ROAST for `req` among the members; returns the outcome with the signed tx.
        `extra_inputs` holds the finished (scriptSig, witness) of inputs that are not the federation's."""
        ctx = self.ctx
        if ctx.keys is None:
            raise SigningError("no active epoch yet", {"status": "failed"})
        keys = ctx.keys
        if req.deadline is None:  # members that get it later than this drop it (the coordinator gave up)
            req = dataclasses.replace(req, deadline=int(time.time() + ctx.timing.request_timeout) + 1)
        try:  # the coordinator needs the sighashes, which only the chain's view of the inputs gives
            tasks = await asyncio.to_thread(self._judge(req).coordinate, req)
        except PolicyRejection as e:
            refused = {"status": "rejected", "rejections": {ctx.me.hex(): f"{e.code}: {e.message}"}}
            ctx.store.save_request(req.id, req.kind, ctx.me, "rejected", req.to_body(), refused)
            raise SigningError(f"this member refuses the request: {e.message}", refused) from None
        loop = asyncio.get_running_loop()
        roast = RoastCoordinator(keys.roast_key, tasks, grace=ctx.timing.roast_grace)
        coord = _Coordination(req, roast, tasks, loop.create_future())
        coord.extra_inputs = dict(extra_inputs or {})
        self._coordinating[req.id] = coord
        ctx.store.save_request(req.id, req.kind, ctx.me, "signing", req.to_body())
        await ctx.send_all(req)
        outcome: dict[str, Any]
        try:
            outcome = await asyncio.wait_for(asyncio.shield(coord.done), ctx.timing.request_timeout)
        except TimeoutError:
            if coord.roast.result is not None and coord.roast.result.ok:
                outcome = await coord.done  # signed: finishing (the broadcast) is under way
            else:
                result = coord.roast.give_up("timed out waiting for enough members")
                outcome = self._failure_outcome(coord, result.reason)
        finally:
            self._coordinating.pop(req.id, None)
            if coord.wake is not None:
                coord.wake.cancel()
        own = self._signing.pop(req.id, None)  # this member's own signer state for the request
        self._judged.pop(req.id, None)
        if own is not None:
            self._settle(own, outcome["status"])
        ctx.store.update_request(req.id, outcome["status"], outcome)
        await ctx.send_all_others(SignDone(req.id, outcome["status"], outcome.get("txid", "")))
        if outcome["status"] not in ("signed", "broadcast"):
            raise SigningError(outcome.get("reason", "signing failed"), outcome)
        return outcome

    def _failure_outcome(self, coord: _Coordination, reason: str) -> dict[str, Any]:
        keys = self.ctx.keys
        assert keys is not None
        malicious = sorted(keys.members[i].hex() for i in coord.roast.malicious)
        return {
            "status": "rejected" if coord.rejections else "failed",
            "reason": reason,
            "rejections": dict(coord.rejections),
            "malicious": malicious,
            "sessions": coord.roast.sessions_started,
        }

    def _coordination_for(self, peer: PeerId, rid: str) -> tuple[_Coordination, int] | None:
        coord = self._coordinating.get(rid)
        if coord is None or self.ctx.keys is None:
            return None
        idx = self.ctx.keys.member_index(peer)
        if idx is None:
            return None
        return coord, idx

    def _on_sign_ready(self, peer: PeerId, msg: Message) -> None:
        ready = SignReady.decode(msg)
        found = self._coordination_for(peer, ready.id)
        if found is None:
            return
        coord, idx = found
        coord.answered.add(idx)
        now = asyncio.get_running_loop().time()
        self._roast_outputs(coord, coord.roast.receive_presignature(Presignature(idx, ready.pubnonces), now))

    def _on_sign_reject(self, peer: PeerId, msg: Message) -> None:
        reject = SignReject.decode(msg)
        found = self._coordination_for(peer, reject.id)
        if found is None:
            return
        coord, idx = found
        coord.answered.add(idx)
        coord.rejections[peer.hex()] = reject.reason
        keys = self.ctx.keys
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
        share = SignShare.decode(msg)
        found = self._coordination_for(peer, share.id)
        if found is None:
            return
        coord, idx = found
        reply = SignerReply(share.sid, idx, share.psigs, share.next)
        self._roast_outputs(coord, coord.roast.receive_reply(reply, asyncio.get_running_loop().time()))

    def _roast_outputs(self, coord: _Coordination, sends: list[Any]) -> None:
        keys = self.ctx.keys
        assert keys is not None
        for send in sends:
            r: SessionRequest = send.request
            session = SignSession(coord.request.id, r.sid, tuple(r.signer_ids), r.signer_session().aggnonces)
            self.ctx.send_later(keys.members[send.to], session)
        self._schedule_tick(coord)
        result = coord.roast.result
        if result is None or coord.done.done() or coord.finishing:
            return
        if not result.ok:
            coord.done.set_result(self._failure_outcome(coord, result.reason or "too many faulty signers"))
            return
        coord.finishing = True
        self.ctx.spawn(self._finish(coord))

    def _schedule_tick(self, coord: _Coordination) -> None:
        """Call the ROAST core's `tick` when its grace period ends, if a session waits for that."""
        wake_at = coord.roast.wake_at
        if coord.wake is not None:
            if wake_at is not None and coord.wake.when() == wake_at:
                return
            coord.wake.cancel()
            coord.wake = None
        if wake_at is not None:
            coord.wake = asyncio.get_running_loop().call_at(wake_at, self._on_grace_end, coord)

    def _on_grace_end(self, coord: _Coordination) -> None:
        coord.wake = None
        if self._coordinating.get(coord.request.id) is coord and not coord.done.done():
            # the loop may run a timer up to its clock resolution early: it is due, so it is the time
            now = max(asyncio.get_running_loop().time(), coord.roast.wake_at or 0.0)
            self._roast_outputs(coord, coord.roast.tick(now))

    async def _finish(self, coord: _Coordination) -> None:
        keys = self.ctx.keys
        assert keys is not None
        result = coord.roast.result
        assert result is not None and result.signatures is not None
        req = coord.request
        try:
            signed = signed_transaction(keys, req, coord.tasks, result.signatures, coord.extra_inputs)
        except ValueError as e:
            coord.done.set_result(self._failure_outcome(coord, str(e)))
            return
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
        chain = self.ctx.chain
        if req.kind in ("payout", "transition", "bump") and chain is not None:
            try:
                await asyncio.to_thread(chain.broadcast, signed)
                outcome["status"] = "broadcast"
            except ChainError as e:
                outcome["status"] = "failed"
                outcome["reason"] = f"signed, but the broadcast failed: {e}"
        if not coord.done.done():
            coord.done.set_result(outcome)

"""The signer's side of ROAST signing over the network: a member answering the requests of others.

It takes part only in what its request kind's judge approved on this member's own chain data and
records, and it journals a nonce as used before a partial signature made with it leaves the member, so
no restart, replay or crafted session ever signs twice with one nonce. `roast_signing.RoastSigning`
adds the coordinator's side on top.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bitcoin.core import b2lx

from frostfed.bitcoin.chain import ChainError
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.federation.context import MemberContext
from frostfed.federation.messages import (
    Message,
    MessageError,
    SignDone,
    SignReady,
    SignReject,
    SignSession,
    SignShare,
)
from frostfed.federation.nonce_journal import NonceReuseError
from frostfed.federation.signing_judges import Judge
from frostfed.federation.signing_request import SigningRequest
from frostfed.frost.roast import RoastSigner, SignerSession, SigningTask
from frostfed.net.channel import PeerId

log = logging.getLogger(__name__)

CLOCK_SKEW = 30.0
"""Seconds a member's clock may be behind the coordinator's before a request it still could sign is dropped."""


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


class SignerRole:
    """The requests this member agreed to sign, by request id.

    It knows no request kind: `judges` maps each kind ("payout", "psbt", "transition") to the judge
    that says what to sign; a kind without a judge is refused. `catch_up` runs before a request for
    another epoch is refused (the epoch watcher may have a newer epoch to activate)."""

    def __init__(
        self,
        ctx: MemberContext,
        judges: Mapping[str, Judge],
        catch_up: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.judges = dict(judges)
        self.catch_up = catch_up
        self._signing: dict[str, _Signing] = {}
        self._judged: dict[str, list[SigningTask]] = {}
        self._judging: set[str] = set()

    def _judge(self, req: SigningRequest) -> Judge:
        judge = self.judges.get(req.kind)
        if judge is None:
            raise PolicyRejection("unknown_kind", f"this member judges no {req.kind} request")
        return judge

    async def _on_sign_request(self, peer: PeerId, msg: Message) -> None:
        req = SigningRequest.decode(msg)
        ctx = self.ctx
        if ctx.keys is not None and ctx.keys.member_index(peer) is None:
            return  # only a member of the current epoch coordinates its signing
        if req.id in self._signing or req.id in self._judging or (peer != ctx.me and ctx.store.requests(req.id)):
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
        view = self.ctx.chain_view
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
        ctx = self.ctx
        reason = await self._check_request(req)
        if reason is not None:
            log.info("request %s from %s refused: %s", req.id, peer.hex()[:16], reason)
            if peer != ctx.me:
                ctx.store.save_request(req.id, req.kind, peer, "refused", req.to_body(), {"reason": reason})
            await ctx.send(peer, SignReject(req.id, reason))
            return
        tasks = self._judged.pop(req.id)
        assert ctx.keys is not None and ctx.secshare is not None
        my_id = ctx.keys.member_index(ctx.me)
        assert my_id is not None
        signer = RoastSigner(ctx.keys.roast_key, my_id, ctx.secshare, tasks)
        pre = signer.presign()
        key = _journal_key(pre.pubnonces)
        accepted = None if peer == ctx.me else req.to_body()  # saved with the nonce, in one write
        ctx.store.issue_nonce_for(key, req.id, req.kind, peer, accepted)
        self._signing[req.id] = _Signing(req, signer, peer, key)
        await ctx.send(peer, SignReady(req.id, pre.pubnonces))

    async def _check_request(self, req: SigningRequest) -> str | None:
        """None if this member will sign `req`, else the reason it refuses."""
        ctx = self.ctx
        if ctx.keys is None or ctx.secshare is None:
            return "no active epoch"
        if req.epoch != ctx.keys.epoch and self.catch_up is not None:
            await self.catch_up()  # perhaps the next epoch has just become active
        if req.epoch != ctx.keys.epoch:
            return f"request is for epoch {req.epoch}, this member is in epoch {ctx.keys.epoch}"
        try:
            self._judged[req.id] = await asyncio.to_thread(self._judge(req).approve, req)
        except PolicyRejection as e:
            return f"{e.code}: {e.message}"
        except ChainError as e:
            return f"chain_unavailable: {e}"
        except Exception as e:  # a check that breaks is a refusal, never a signature
            log.exception("policy check failed")
            return f"check_failed: {type(e).__name__}: {e}"
        return None

    async def _on_sign_session(self, peer: PeerId, msg: Message) -> None:
        try:  # every field checked before the nonce journal is touched
            session = SignSession.decode(msg)
        except MessageError as e:
            rid, sid = str(msg.body.get("id"))[:64], str(msg.body.get("sid"))[:20]
            log.warning("session %s/%s from %s refused: %s", rid, sid, peer.hex()[:16], e)
            return
        rid = session.id
        state = self._signing.get(rid)
        if state is None or peer != state.coordinator:
            return
        request = SignerSession(session.sid, session.signers, session.aggnonces)
        try:
            state.signer.check_session(request)
        except ValueError as e:
            log.warning("session %s/%s from %s refused: %s", rid, session.sid, peer.hex()[:16], e)
            return
        try:
            reply = state.signer.on_session(request)  # in memory only: nothing leaves before the journal says used
        except ValueError as e:
            log.warning("session %s/%d could not be signed: %s", rid, request.sid, e)
            return
        next_key = _journal_key(reply.next_pubnonces)
        try:  # one durable write: this nonce used, the next presignature issued
            self.ctx.store.use_nonce_and_issue(state.pubnonce_key, next_key, rid)
        except NonceReuseError as e:
            log.error("session %s/%d refused: %s", rid, request.sid, e)
            return
        state.pubnonce_key = next_key
        state.signed = True
        await self.ctx.send(peer, SignShare(rid, reply.sid, tuple(reply.psigs), tuple(reply.next_pubnonces)))

    def _on_sign_done(self, peer: PeerId, msg: Message) -> None:
        done = SignDone.decode(msg)
        state = self._signing.get(done.id)
        if state is None or peer != state.coordinator:
            return
        del self._signing[done.id]
        self._settle(state, done.status)
        self.ctx.store.update_request(done.id, done.status, {"txid": done.txid})

    def _settle(self, state: _Signing, status: str) -> None:
        """The request is over: its outstanding nonce is discarded. The ledger's reservation stays:
        only a confirmed transaction spending one of its inputs releases it (whatever a coordinator
        says, a partial signature of this member may exist, or others may still complete the
        request). A retry of the same debt spends the same anchor, so it replaces the reservation."""
        self.ctx.store.discard_nonce(state.pubnonce_key)

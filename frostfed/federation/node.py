"""A federation member: the epoch's DKG, ROAST signing as coordinator and as signer, heartbeats.

The member sits on any `Channel` (Noise over TCP standalone, custom messages inside Core
Lightning): a reliable layer on top, multiplexed into the echo broadcast (DKG rounds) and the
member's own point-to-point messages. Crypto and policy are the sans-I/O pieces of `frost/` and
`bitcoin/`; this module only moves their messages, keeps the durable record, and enforces the two
rules that must hold whatever the network does:
  - a member signs only what its own policy accepted, on its own chain data;
  - a nonce is journalled as used before a partial signature made with it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bitcoin.core import CTransaction, CTxIn, b2lx
from bitcoin.core.script import CScript

from frostfed.bitcoin.chain import BitcoindRpc, ChainError, ChainSource
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.policy import (
    ChainChecks,
    CommandPolicy,
    FeeBounds,
    LedgerPolicy,
    PayoutPolicy,
    Policy,
    PolicyRejection,
)
from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, keypath_witness_stack, with_keypath_witnesses
from frostfed.bitcoin.taproot import p2tr_address
from frostfed.federation.bond_wallet import BitcoindBondWallet, BondWallet
from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.dkg_run import DkgFailed, DkgResult, DkgRun
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership import Membership
from frostfed.federation.messages import Message, MessageError, decode, encode
from frostfed.federation.sealing import Sealer
from frostfed.federation.signing_request import SigningRequest, federation_scripts, judge, signing_tasks
from frostfed.federation.store import EpochRecord, NonceReuseError, Store
from frostfed.frost import chilldkg
from frostfed.frost.roast import (
    Presignature,
    RoastCoordinator,
    RoastSigner,
    SessionRequest,
    SignerReply,
    SigningTask,
)
from frostfed.frost.secp import schnorr_verify
from frostfed.net.channel import Channel, PeerId
from frostfed.net.links import links_over

log = logging.getLogger(__name__)

FEDERATION_PORT = 16


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


def _echo_sid(session: str) -> bytes:
    """Echo-broadcast session ids are 32 bytes: the hash of the readable DKG session name."""
    return hashlib.sha256(session.encode()).digest()


def _journal_key(pubnonces: tuple[bytes, ...]) -> bytes:
    return b"".join(pubnonces)


class Member:
    def __init__(
        self,
        *,
        me: PeerId,
        echo_secret: bytes,
        host_seckey: bytes,
        sealer: Sealer,
        store: Store,
        channel: Channel,
        members: list[PeerId],
        threshold: int,
        chain: ChainSource | None,
        ledger: Ledger | None,
        policy: PolicySettings,
        network: str = "regtest",
        heartbeat_seconds: float = 2.0,
        offline_after_seconds: float = 10.0,
        request_timeout: float = 60.0,
        dkg_timeout: float = 120.0,
        faults: frozenset[str] = frozenset(),
        extra_policies: list[Policy] | None = None,
        membership: MembershipSettings | None = None,
        joining: bool = False,
        directory: dict[PeerId, str] | None = None,
        rpc: BitcoindRpc | None = None,
        bond_key: bytes | None = None,
        add_peer: Callable[[PeerId, str], None] | None = None,
        bond_wallet: BondWallet | None = None,
    ) -> None:
        if me not in members and not joining:
            raise ValueError("this member's id is not in the member list")
        self.me = me
        self.members = list(members)
        self.threshold = threshold
        self.store = store
        self.sealer = sealer
        self.chain = chain
        self.ledger = ledger
        self.policy_settings = policy
        self.network = network
        self.heartbeat_seconds = heartbeat_seconds
        self.offline_after_seconds = offline_after_seconds
        self.request_timeout = request_timeout
        self.dkg_timeout = dkg_timeout
        self.faults = faults
        self.extra_policies = extra_policies or []
        self._host_seckey = host_seckey
        self._echo_secret = echo_secret
        self.channel = channel
        self.links = links_over(channel, echo_secret)
        self.port = self.links.port(FEDERATION_PORT)
        self.echo = self.links.round_echo
        self.port.on_receive(self._on_message)
        self.echo.on_deliver(self._on_broadcast)
        self.echo.on_abort(self._on_broadcast_abort)
        self.last_seen: dict[PeerId, float] = {}
        self.started = time.time()
        self.keys: EpochKeys | None = None
        self.epoch_at: float | None = None
        self._secshare: bytes | None = None
        self._dkg: DkgRun | None = None
        self._dkg_attempt = 0
        self.dkg_attempts_seen: dict[int, int] = {}
        self._dkg_sessions: dict[bytes, str] = {}
        self._dkg_progress = 0.0
        self.dkg_error: str | None = None
        self.epoch_ready = asyncio.Event()
        self._coordinating: dict[str, _Coordination] = {}
        self._signing: dict[str, _Signing] = {}
        self._judged: dict[str, list[SigningTask]] = {}
        self._judging: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._dkg_plan_members: list[PeerId] = list(self.members)
        self._dkg_plan_threshold = threshold
        self.rpc = rpc
        self.joining = joining
        self.membership = Membership(
            self,
            membership or MembershipSettings(),
            directory or {},
            bond_key,
            add_peer,
            bond_wallet if bond_wallet is not None or rpc is None else BitcoindBondWallet(rpc),
        )

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        discarded = self.store.discard_issued_nonces()
        if discarded:
            log.info("discarded %d nonces left from before a restart", discarded)
        rec = self.store.active_epoch()
        if rec is not None:
            self._activate(rec)
        elif not self.joining and not self.store.epochs():
            attempt = int(self.store.get_meta("dkg_attempt:0") or "0") + 1
            self._start_dkg(0, self.members, self.threshold, attempt)
        self.membership.resume()
        self._spawn(self._heartbeat_loop())

    async def stop(self) -> None:
        self._stopping = True
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        for c in self._coordinating.values():
            if not c.done.done():
                c.done.cancel()
        await self.links.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed: %r", task.exception(), exc_info=task.exception())

    async def _send(self, peer: PeerId, kind: str, body: dict[str, Any]) -> None:
        data = encode(kind, body)
        if peer == self.me:
            self._on_message(self.me, data)
            return
        try:
            await self.port.send(peer, data)
        except Exception as e:  # a full queue or a closed channel: the peer simply misses it
            log.warning("cannot send %s to %s: %s", kind, peer.hex()[:16], e)

    async def _send_all(self, kind: str, body: dict[str, Any]) -> None:
        await asyncio.gather(*(self._send(m, kind, body) for m in self.members))

    # -- incoming --------------------------------------------------------------------------------

    def _on_message(self, peer: PeerId, data: bytes) -> None:
        if peer not in self.members and peer not in self.membership.extra_peers():
            log.warning("message from non-member %s ignored", peer.hex()[:16])
            return
        self.last_seen[peer] = time.time()
        try:
            msg = decode(data)
            handler: Callable[[PeerId, Message], Any] | None = {
                "hb": self._on_heartbeat,
                "dkg_hello": self._on_dkg_hello,
                "epoch_recovery": self._on_epoch_recovery,
                "sreq": self._on_sign_request,
                "sready": self._on_sign_ready,
                "srej": self._on_sign_reject,
                "ssess": self._on_sign_session,
                "sshare": self._on_sign_share,
                "sdone": self._on_sign_done,
                "addr": self._on_address,
            }.get(msg.kind) or self.membership.handlers.get(msg.kind)
            if handler is None:
                raise MessageError(f"unknown message type {msg.kind!r}")
            result = handler(peer, msg)
            if asyncio.iscoroutine(result):
                self._spawn(self._guard(peer, msg.kind, result))
        except MessageError as e:
            log.warning("malformed message from %s: %s", peer.hex()[:16], e)
        except Exception:  # a handler's bug must not take the transport down
            log.exception("message from %s could not be handled", peer.hex()[:16])

    async def _guard(self, peer: PeerId, kind: str, coro: Any) -> None:
        try:
            await coro
        except MessageError as e:
            log.warning("malformed %s from %s: %s", kind, peer.hex()[:16], e)
        except Exception:
            log.exception("%s from %s could not be handled", kind, peer.hex()[:16])

    def _on_heartbeat(self, peer: PeerId, msg: Message) -> None:
        """Heartbeats carry the sender's epoch and the transaction that opened it, so a member that
        missed the end of a membership change learns where to look (it checks the chain itself)."""
        epoch = msg.body.get("epoch")
        txid = msg.body.get("txid")
        if isinstance(epoch, int) and not isinstance(epoch, bool) and isinstance(txid, str) and len(txid) == 64:
            self.membership.hint(peer, epoch, txid)

    async def _heartbeat_loop(self) -> None:
        reconcile_every = max(1, int(5 / self.heartbeat_seconds))
        beat = 0
        while not self._stopping:
            await self._send_all_others("hb", self._heartbeat_body())
            beat += 1
            if self.ledger is not None and self.chain is not None and beat % reconcile_every == 0:
                try:
                    confirmed = await asyncio.to_thread(
                        self.ledger.reconcile, self.chain, self.policy_settings.min_confirmations
                    )
                    for txid in confirmed:
                        self.store.mark_confirmed(txid)
                except Exception as e:  # the chain source is down: try again later
                    log.warning("ledger reconciliation failed: %s", e)
            if self._dkg is not None and time.time() - self._dkg_progress > self.dkg_timeout:
                run = self._dkg
                log.warning("DKG attempt %d made no progress; starting the next", run.attempt)
                self._start_dkg(run.epoch, run.members, run.threshold, run.attempt + 1)
            with contextlib.suppress(Exception):
                await self.membership.tick()
            await asyncio.sleep(self.heartbeat_seconds)

    def _heartbeat_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"t": int(time.time())}
        if self.keys is not None:
            body["epoch"] = self.keys.epoch
            rec = self.store.epoch(self.keys.epoch)
            if rec is not None and rec.activation_txid:
                body["txid"] = rec.activation_txid
        return body

    async def _send_all_others(self, kind: str, body: dict[str, Any]) -> None:
        await asyncio.gather(*(self._send(m, kind, body) for m in self.members if m != self.me))

    def online(self, peer: PeerId) -> bool:
        if peer == self.me:
            return True
        seen = self.last_seen.get(peer)
        return seen is not None and time.time() - seen < self.offline_after_seconds

    # -- DKG -------------------------------------------------------------------------------------

    def _start_dkg(self, epoch: int, members: list[PeerId], threshold: int, attempt: int) -> None:
        """Start (or move to) DKG attempt `attempt` for `epoch` among `members`; everyone joins the
        highest attempt any member announces, so a member that restarted mid-DKG brings the others
        along instead of being left behind."""
        self.stop_dkg()
        self._dkg_attempt = attempt
        self.store.set_meta(f"dkg_attempt:{epoch}", str(attempt))
        self._dkg = DkgRun(epoch, attempt, list(members), threshold, self.me, self._host_seckey)
        self._dkg_progress = time.time()
        self._dkg_sessions = {}
        for rnd in ("hostkey", "r1", "r2"):
            name = self._dkg.session(rnd)
            self._dkg_sessions[_echo_sid(name)] = name
            self.echo.start_session(_echo_sid(name), members)
        body = {"epoch": epoch, "attempt": attempt}
        for m in members:
            if m != self.me:
                self._spawn(self._send(m, "dkg_hello", body))
        for session, payload in self._dkg.start():
            self._spawn(self.echo.broadcast(_echo_sid(session), payload))

    def stop_dkg(self) -> None:
        if self._dkg is not None:
            for rnd in ("hostkey", "r1", "r2"):
                self.echo.close_session(_echo_sid(self._dkg.session(rnd)))
        self._dkg = None
        self._dkg_sessions = {}

    def _on_dkg_hello(self, peer: PeerId, msg: Message) -> None:
        epoch = msg.integer("epoch", 0, 2**31)
        attempt = msg.integer("attempt", 1, 2**31)
        run = self._dkg
        self.dkg_attempts_seen[epoch] = max(attempt, self.dkg_attempts_seen.get(epoch, 0))
        if run is not None and run.epoch == epoch:
            if attempt > run.attempt and peer in run.members:
                self._start_dkg(epoch, run.members, run.threshold, attempt)
            elif attempt < run.attempt and peer in run.members:  # bring it to the current attempt
                self._spawn(self._send(peer, "dkg_hello", {"epoch": epoch, "attempt": run.attempt}))
            return
        rec = self.store.epoch(epoch)
        if rec is not None and peer in rec.members:  # it missed the end: give it the recovery data
            self._spawn(self._send(peer, "epoch_recovery", {"epoch": epoch, "recovery": rec.recovery.hex()}))

    def _on_broadcast(self, session_id: bytes, sender: PeerId, payload: bytes) -> None:
        run = self._dkg
        session = self._dkg_sessions.get(session_id)
        if run is None or session is None:
            return
        self._dkg_progress = time.time()
        try:
            out = run.on_delivered(session, sender, payload)
        except DkgFailed as e:
            self._dkg_failed(run, e)
            return
        for s, p in out:
            self._spawn(self.echo.broadcast(_echo_sid(s), p))
        if run.result is not None:
            self._dkg_done(run.result, run.epoch)

    def _on_broadcast_abort(self, session_id: bytes, proof: Any) -> None:
        run = self._dkg
        if run is not None and session_id in self._dkg_sessions:
            self._dkg_failed(run, DkgFailed("equivocation in an echo broadcast", proof.sender))

    def _dkg_failed(self, run: DkgRun, e: DkgFailed) -> None:
        blame = f" (blames {e.blame.hex()})" if e.blame else ""
        self.dkg_error = f"DKG attempt {run.attempt} failed: {e.reason}{blame}"
        log.error(self.dkg_error)
        if self._dkg is run:
            self._start_dkg(run.epoch, run.members, run.threshold, run.attempt + 1)

    def _dkg_done(self, result: DkgResult, epoch: int) -> None:
        self._dkg = None
        self.dkg_error = None
        if epoch > 0:
            self.membership.on_dkg_done(result, epoch)
            return
        rec = self.epoch_record(result, 0, "active")
        self.store.save_epoch(rec)
        log.info("epoch 0 established: group key %s", result.group_key.hex())
        self._activate(rec)

    def epoch_record(self, result: DkgResult, epoch: int, status: str) -> EpochRecord:
        return EpochRecord(
            epoch=epoch,
            status=status,
            members=result.members,
            threshold=result.threshold,
            group_key=result.group_key,
            chain_code=result.chain_code,
            pubshares=result.pubshares,
            recovery=result.recovery,
            sealed_share=self.sealer.seal(result.secshare, self._seal_context(epoch)),
        )

    def _on_epoch_recovery(self, peer: PeerId, msg: Message) -> None:
        """A member that finished a DKG shares its (public) recovery data with one that did not."""
        run = self._dkg
        epoch = msg.integer("epoch", 0, 2**31)
        if run is None or run.epoch != epoch or peer not in run.members:
            return
        recovery = msg.hexbytes("recovery", max_len=1 << 20)
        try:
            out, params = chilldkg.participant_recover(self._host_seckey, recovery)
        except Exception as e:
            log.warning("recovery data from %s refused: %s", peer.hex()[:16], e)
            return
        if params.t != run.threshold or len(params.hostpubkeys) != len(run.members) or out.secshare is None:
            log.warning("recovery data from %s is for another DKG", peer.hex()[:16])
            return
        result = DkgResult(
            threshold=run.threshold,
            members=list(run.members),
            hostpubkeys=list(params.hostpubkeys),
            group_key=bytes(out.thresh_pk),
            pubshares=[bytes(p) for p in out.pubshares],
            secshare=bytes(out.secshare),
            recovery=recovery,
        )
        log.info("recovered epoch %d from the recovery data of %s", epoch, peer.hex()[:16])
        self._dkg_done(result, epoch)

    def _seal_context(self, epoch: int) -> bytes:
        return b"frostfed/share/" + epoch.to_bytes(4, "big") + self.me

    def _activate(self, rec: EpochRecord) -> None:
        self._secshare = self.sealer.open(rec.sealed_share or b"", self._seal_context(rec.epoch))
        self.keys = EpochKeys(
            rec.epoch, rec.members, rec.threshold, rec.group_key, rec.chain_code, rec.pubshares, self.network
        )
        self.members = list(rec.members)
        self.threshold = rec.threshold
        self.joining = False
        self.epoch_at = time.time()
        self.epoch_ready.set()

    # -- policy ----------------------------------------------------------------------------------

    def build_policy(self, req: SigningRequest) -> PayoutPolicy:
        if self.chain is None:
            raise ChainError("this member has no chain source")
        assert self.keys is not None
        s = self.policy_settings
        checks = ChainChecks(
            self.chain,
            federation_scripts(self.keys, req),
            FeeBounds(s.min_feerate, s.max_feerate, s.max_fee_sats),
            s.min_confirmations,
        )
        policies: list[Policy] = []
        if self.ledger is not None:
            policies.append(LedgerPolicy(self.ledger, self.network))
        if s.payout_check_command:
            policies.append(CommandPolicy(s.payout_check_command, self.network))
        policies += self.extra_policies
        return PayoutPolicy(checks, policies)

    # -- signing: coordinator --------------------------------------------------------------------

    async def request_signatures(
        self, req: SigningRequest, extra_inputs: dict[int, tuple[bytes, list[bytes]]] | None = None
    ) -> dict[str, Any]:
        """Coordinate ROAST for `req` among the members; returns the outcome with the signed tx.
        `extra_inputs` holds the finished (scriptSig, witness) of inputs that are not the federation's."""
        if self.keys is None:
            raise SigningError("no active epoch yet", {"status": "failed"})
        keys = self.keys
        # The coordinator needs the sighashes, which only the chain's view of the inputs gives.
        try:
            if req.kind == "transition":
                tasks = await asyncio.to_thread(self.membership.transition_tasks, req)
            else:
                chain_checks = self.build_policy(req).chain_checks
                payout = await asyncio.to_thread(chain_checks.check, req.tx)
                tasks = signing_tasks(keys, req, payout)
        except PolicyRejection as e:
            outcome = {"status": "rejected", "rejections": {self.me.hex(): f"{e.code}: {e.message}"}}
            self.store.save_request(req.id, req.kind, self.me, "rejected", req.to_body(), outcome)
            raise SigningError(f"this member refuses the request: {e.message}", outcome) from None
        loop = asyncio.get_running_loop()
        coord = _Coordination(req, RoastCoordinator(keys.roast_key, tasks), tasks, loop.create_future())
        coord.extra_inputs = dict(extra_inputs or {})
        self._coordinating[req.id] = coord
        self.store.save_request(req.id, req.kind, self.me, "signing", req.to_body())
        await self._send_all("sreq", req.to_body())
        try:
            outcome = await asyncio.wait_for(asyncio.shield(coord.done), self.request_timeout)
        except TimeoutError:
            result = coord.roast.give_up("timed out waiting for enough members")
            outcome = self._failure_outcome(coord, result.reason)
        finally:
            self._coordinating.pop(req.id, None)
        self.store.update_request(req.id, outcome["status"], outcome)
        await self._send_all_others(
            "sdone", {"id": req.id, "status": outcome["status"], "txid": outcome.get("txid", "")}
        )
        if outcome["status"] not in ("signed", "broadcast"):
            raise SigningError(outcome.get("reason", "signing failed"), outcome)
        return outcome

    def _failure_outcome(self, coord: _Coordination, reason: str) -> dict[str, Any]:
        keys = self.keys
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
        if coord is None or self.keys is None:
            return None
        idx = self.keys.member_index(peer)
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
        keys = self.keys
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
            msg.integer("sid"),
            idx,
            tuple(msg.hexlist("psigs", 32, max_items=len(coord.tasks))),
            tuple(msg.hexlist("next", 66, max_items=len(coord.tasks))),
        )
        self._roast_outputs(coord, coord.roast.receive_reply(reply))

    def _roast_outputs(self, coord: _Coordination, sends: list[Any]) -> None:
        keys = self.keys
        assert keys is not None
        for send in sends:
            r: SessionRequest = send.request
            body = {
                "id": coord.request.id,
                "sid": r.sid,
                "signers": list(r.signer_ids),
                "pubnonces": [[p.hex() for p in ps] for ps in r.pubnonces],
            }
            self._spawn(self._send(keys.members[send.to], "ssess", body))
        result = coord.roast.result
        if result is None or coord.done.done():
            return
        if not result.ok:
            coord.done.set_result(self._failure_outcome(coord, result.reason or "too many faulty signers"))
            return
        self._spawn(self._finish(coord))

    async def _finish(self, coord: _Coordination) -> None:
        keys = self.keys
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
        if req.kind in ("payout", "transition") and self.chain is not None:
            try:
                await asyncio.to_thread(self.chain.broadcast, signed)
                outcome["status"] = "broadcast"
            except ChainError as e:
                outcome["status"] = "failed"
                outcome["reason"] = f"signed, but the broadcast failed: {e}"
        if not coord.done.done():
            coord.done.set_result(outcome)

    # -- signing: signer -------------------------------------------------------------------------

    async def _on_sign_request(self, peer: PeerId, msg: Message) -> None:
        req = SigningRequest.from_message(msg)
        if req.id in self._signing or req.id in self._judging or (peer != self.me and self.store.requests(req.id)):
            return  # a repeated request: answered once only
        self._judging.add(req.id)  # before the first await: a duplicate arriving meanwhile is dropped
        try:
            await self._answer_request(peer, req)
        finally:
            self._judging.discard(req.id)

    async def _answer_request(self, peer: PeerId, req: SigningRequest) -> None:
        reason = await self._check_request(req)
        if reason is not None:
            log.info("request %s from %s refused: %s", req.id, peer.hex()[:16], reason)
            if peer != self.me:
                self.store.save_request(req.id, req.kind, peer, "refused", req.to_body(), {"reason": reason})
            await self._send(peer, "srej", {"id": req.id, "reason": reason})
            return
        tasks = self._judged.pop(req.id)
        assert self.keys is not None and self._secshare is not None
        my_id = self.keys.member_index(self.me)
        assert my_id is not None
        signer = RoastSigner(self.keys.roast_key, my_id, self._secshare, tasks)
        pre = signer.presign()
        key = _journal_key(pre.pubnonces)
        self.store.issue_nonce(key, req.id)
        self._signing[req.id] = _Signing(req, signer, peer, key)
        if "slow-ready" in self.faults:  # test fault: a member that answers requests late
            await asyncio.sleep(1)
        if peer != self.me:
            self.store.save_request(req.id, req.kind, peer, "accepted", req.to_body())
        await self._send(peer, "sready", {"id": req.id, "pubnonces": [p.hex() for p in pre.pubnonces]})

    async def _check_request(self, req: SigningRequest) -> str | None:
        """None if this member will sign `req`, else the reason it refuses."""
        if self.keys is None or self._secshare is None:
            return "no active epoch"
        if req.epoch != self.keys.epoch:
            await self.membership.tick()  # perhaps the next epoch has just become active
        if req.epoch != self.keys.epoch:
            return f"request is for epoch {req.epoch}, this member is in epoch {self.keys.epoch}"
        try:
            if req.kind == "transition":
                self._judged[req.id] = await asyncio.to_thread(self.membership.transition_tasks, req)
            else:
                policy = self.build_policy(req)
                self._judged[req.id] = await asyncio.to_thread(judge, self.keys, req, policy)
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
        ntasks = len(state.signer.tasks)
        signers = msg.get("signers", list)
        raw = msg.get("pubnonces", list)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in signers) or len(raw) != len(signers):
            raise MessageError("ssess: malformed signer list")
        pubnonces = []
        for ps in raw:
            if not isinstance(ps, list) or len(ps) != ntasks:
                raise MessageError("ssess: malformed pubnonces")
            pubnonces.append(tuple(Message("ssess", {"p": ps}).hexlist("p", 66)))
        request = SessionRequest(msg.integer("sid"), tuple(signers), tuple(pubnonces))
        me = state.signer.my_id
        if (
            me not in request.signer_ids
            or _journal_key(request.pubnonces[request.signer_ids.index(me)]) != state.pubnonce_key
        ):
            log.warning("session %s/%d does not carry this member's presignature", rid, request.sid)
            return
        try:
            self.store.use_nonce(state.pubnonce_key)  # durable before any partial signature exists
        except NonceReuseError as e:
            log.error("refusing to sign %s/%d: %s", rid, request.sid, e)
            return
        try:
            reply = state.signer.on_session(request)
        except ValueError as e:
            log.warning("cannot sign %s/%d: %s", rid, request.sid, e)
            return
        next_key = _journal_key(reply.next_pubnonces)
        self.store.issue_nonce(next_key, rid)
        state.pubnonce_key = next_key
        psigs = list(reply.psigs)
        if "delay-psig" in self.faults:  # test fault: a member that stalls mid-signing
            await asyncio.sleep(3)
        if "bad-psig" in self.faults:
            psigs = [os.urandom(32) for _ in psigs]
        await self._send(
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
        state = self._signing.pop(rid, None)
        if state is None or peer != state.coordinator:
            return
        self.store.discard_nonce(state.pubnonce_key)
        status = msg.text("status", 32)
        self.store.update_request(rid, status, {"txid": msg.text("txid", 64)})

    # -- addresses -------------------------------------------------------------------------------

    async def announce_address(self, epoch: int, index: int) -> None:
        """Tell the others an address index is taken, so every member's next address is a new one and
        every coordinator's coin scan covers it (two members handing out the same index at the same
        moment only reuse an address)."""
        await self._send_all_others("addr", {"epoch": epoch, "index": index})

    def _on_address(self, peer: PeerId, msg: Message) -> None:
        keys = self.keys
        epoch, index = msg.integer("epoch"), msg.integer("index", 0, 2**31 - 1)
        if keys is None or epoch != keys.epoch:
            return
        self.store.record_address(epoch, index, p2tr_address(keys.output_key((0, index)), keys.network))

    # -- what the commands read ------------------------------------------------------------------

    def _state(self) -> str:
        if self.keys is not None:
            return "active"
        if self.store.get_meta("left_at_epoch"):
            return "left"
        if self._dkg is not None:
            return "dkg"
        return "joining" if self.joining else "starting"

    def status(self) -> dict[str, Any]:
        keys = self.keys
        now = time.time()
        return {
            "id": self.me.hex(),
            "epoch": keys.epoch if keys else None,
            "state": self._state(),
            "dkg_attempt": self._dkg_attempt if not keys else None,
            "dkg_error": self.dkg_error,
            "threshold": self.threshold,
            "n": len(self.members),
            "group_key": keys.group_key.hex() if keys else None,
            "members": [
                {
                    "id": m.hex(),
                    "self": m == self.me,
                    "online": self.online(m),
                    "last_seen": None if m == self.me else self.last_seen.get(m),
                    "seconds_ago": None
                    if m == self.me or m not in self.last_seen
                    else round(now - self.last_seen[m], 1),
                }
                for m in self.members
            ],
            "online": sum(1 for m in self.members if self.online(m)),
            "nonces": self.store.nonce_counts(),
            "started_at": self.started,
            "epoch_at": self.epoch_at,
            "membership_change": self.membership.status()["in_progress"],
        }

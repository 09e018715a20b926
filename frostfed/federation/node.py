"""A federation member: its transport, the epoch's DKG, liveness, and the durable record.

The member sits on any `Channel` (Noise over TCP standalone, custom messages inside Core
Lightning): a reliable layer on top, multiplexed into the round echo broadcast (DKG rounds) and the
member's own point-to-point messages. ROAST signing (`roast_signing`) and membership changes
(`membership/`, a state machine and its driver) run on the same member and share its messages, store and chain source; crypto and
policy are the sans-I/O pieces of `frost/` and `bitcoin/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from frostfed.bitcoin.chain import BitcoindRpc, ChainError, ChainSource
from frostfed.bitcoin.chain_index import RECEIVE, ChainIndex
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.policy import (
    Policy,
)
from frostfed.bitcoin.taproot import p2tr_address
from frostfed.federation.bond_wallet import BitcoindBondWallet, BondWallet
from frostfed.federation.chain_view import ChainView
from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.dkg_run import DkgFailed, DkgResult, DkgRun
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership import Membership
from frostfed.federation.messages import Message, MessageError, decode, encode
from frostfed.federation.roast_signing import RoastSigning
from frostfed.federation.sealing import Sealer
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.store import EpochRecord, Store
from frostfed.frost import chilldkg
from frostfed.net.channel import Channel, PeerId
from frostfed.net.links import links_over

log = logging.getLogger(__name__)

FEDERATION_PORT = 16
MAX_ADDRESS_GAP = 500
"""How far past the highest receive index paid on chain another member's announcement may reach: well
inside the chain index's look-ahead (RECEIVE_LOOKAHEAD), so every address handed out is watched."""


def _echo_sid(session: str) -> bytes:
    """Echo-broadcast session ids are 32 bytes: the hash of the readable DKG session name."""
    return hashlib.sha256(session.encode()).digest()


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
        chain_index: ChainIndex | None = None,
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
        self.chain_view = ChainView(chain_index or ChainIndex(":memory:"), store, chain, ledger, network)
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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._dkg_plan_members: list[PeerId] = list(self.members)
        self._dkg_plan_threshold = threshold
        self.rpc = rpc
        self.joining = joining
        self.signing = RoastSigning(self)
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
            if self.chain is not None:  # no coin can pay the key before this: the index reads from here
                try:
                    self.chain_view.note_epoch_start(0, await asyncio.to_thread(self.chain.tip_height))
                except ChainError as e:
                    log.warning("chain source unavailable at the start: %s", e)
            attempt = int(self.store.get_meta("dkg_attempt:0") or "0") + 1
            self._start_dkg(0, self.members, self.threshold, attempt)
        self.membership.resume()
        self._spawn(self._heartbeat_loop())

    async def stop(self) -> None:
        self._stopping = True
        self.membership.save_clock()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        self.signing.close()
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
            handler: Callable[[PeerId, Message], Any] | None = (
                {
                    "hb": self._on_heartbeat,
                    "dkg_hello": self._on_dkg_hello,
                    "epoch_recovery": self._on_epoch_recovery,
                    "addr": self._on_address,
                }.get(msg.kind)
                or self.signing.handlers.get(msg.kind)
                or self.membership.handlers.get(msg.kind)
            )
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
            try:
                await self._beat(beat, reconcile_every)
            except Exception:  # one failing beat must not silence the member for good
                log.exception("heartbeat failed")
            beat += 1
            await asyncio.sleep(self.heartbeat_seconds)

    async def _beat(self, beat: int, reconcile_every: int) -> None:
        """One heartbeat: tell the others this member is up, read new blocks into the chain index and
        the ledger, watch the DKG and any membership change."""
        await self._send_all_others("hb", self._heartbeat_body())
        if self.chain is not None and beat % reconcile_every == 0:
            try:  # the chain index reads new blocks, the ledger counts what they paid
                await asyncio.to_thread(self.chain_view.refresh)
            except Exception as e:  # the chain source is down: try again later
                log.warning("chain index update failed: %s", e)
        if self._dkg is not None and time.time() - self._dkg_progress > self.dkg_timeout:
            run = self._dkg
            log.warning("DKG attempt %d made no progress; starting the next", run.attempt)
            self._start_dkg(run.epoch, run.members, run.threshold, run.attempt + 1)
        try:
            await self.membership.tick()
        except Exception:
            log.exception("membership check failed")

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
        self.chain_view.note_epoch_start(epoch)
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
        known = {**self.membership.known_hostkeys(), **run.hostkeys}
        foreign = any(known.get(m, hk) != hk for m, hk in zip(run.members, params.hostpubkeys, strict=False))
        if params.t != run.threshold or len(params.hostpubkeys) != len(run.members) or out.secshare is None or foreign:
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

    # -- signing -------------------------------------------------------------------------------

    async def request_signatures(
        self, req: SigningRequest, extra_inputs: dict[int, tuple[bytes, list[bytes]]] | None = None
    ) -> dict[str, Any]:
        """Coordinate ROAST for `req` among the members (see roast_signing)."""
        return await self.signing.request_signatures(req, extra_inputs)

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
        used = self.chain_view.index.used_indexes(epoch)[RECEIVE]
        if index > used + MAX_ADDRESS_GAP:  # from the chain, not from this member's index: announcements add up
            log.warning("address index %d from %s is too far ahead; ignored", index, peer.hex()[:16])
            return  # the chain index watches every index up to the highest one paid + its look-ahead
        self.store.record_address(epoch, index, p2tr_address(keys.output_key((0, index)), keys.network))

    # -- what the commands read ------------------------------------------------------------------

    def _state(self) -> str:
        if self.keys is not None:
            return "active"
        if self.membership.left_at_epoch() is not None:
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

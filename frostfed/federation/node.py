"""A federation member: the composition root that wires its parts together.

The member sits on any `Channel` (Noise over TCP standalone, custom messages inside Core
Lightning): a reliable layer on top, multiplexed into the round echo broadcast (DKG rounds) and the
member's own point-to-point messages. It builds the narrow `MemberContext` the protocol parts share
(ROAST signing in `roast_signing`, the DKG in `dkg_driver`, membership changes in `membership/`, a
state machine and its driver), routes each received message to the part that owns its kind, and
keeps what is its own: liveness (heartbeats), the active epoch, and address announcements. Crypto
and policy are the sans-I/O pieces of `frost/` and `bitcoin/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from frostfed.bitcoin.chain import BitcoindRpc, ChainError, ChainSource
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.chain_index_schema import RECEIVE
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.policy import Policy
from frostfed.bitcoin.taproot import p2tr_address
from frostfed.federation import health
from frostfed.federation.bond_wallet import BitcoindBondWallet, BondWallet
from frostfed.federation.chain_view import ChainView
from frostfed.federation.config import MembershipSettings, PolicySettings
from frostfed.federation.context import MemberContext, Timing
from frostfed.federation.dkg_driver import DkgDriver, epoch_record, seal_context
from frostfed.federation.dkg_run import DkgResult
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership import Membership
from frostfed.federation.membership.host import Hooks
from frostfed.federation.messages import Address, Heartbeat, Kind, Message, MessageError, decode, encode
from frostfed.federation.progress import no_answer
from frostfed.federation.roast_signing import RoastSigning
from frostfed.federation.sealing import Sealer
from frostfed.federation.signing_judges import Judge, PayoutJudge, SameCheck
from frostfed.federation.store import EpochRecord, Store
from frostfed.net.channel import Channel, PeerId
from frostfed.net.links import links_over

log = logging.getLogger(__name__)

FEDERATION_PORT = 16
MAX_ADDRESS_GAP = 500
"""How far past the highest receive index paid on chain another member's announcement may reach: well
inside the chain index's look-ahead (RECEIVE_LOOKAHEAD), so every address handed out is watched."""


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
        roast_grace_seconds: float = 0.25,
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
        self.store = store
        self.sealer = sealer
        self.chain = chain
        self.ledger = ledger
        self.policy_settings = policy
        self.network = network
        self.chain_view = ChainView(chain_index or ChainIndex(":memory:"), store, chain, ledger, network)
        self.ctx = MemberContext(
            me=me,
            host_seckey=host_seckey,
            sealer=sealer,
            store=store,
            chain=chain,
            chain_view=self.chain_view,
            ledger=ledger,
            network=network,
            policy=policy,
            timing=Timing(heartbeat_seconds, offline_after_seconds, request_timeout, dkg_timeout, roast_grace_seconds),
            send_raw=lambda peer, kind, body: self._send(peer, kind, body),  # late: a subclass may wrap _send
            spawn=lambda coro: self._spawn(coro),
            online=lambda peer: self.online(peer),
            members=list(members),
            threshold=threshold,
        )
        self.channel = channel
        self.links = links_over(channel, echo_secret)
        self.port = self.links.port(FEDERATION_PORT)
        self.port.on_receive(self._on_message)
        self.last_seen: dict[PeerId, float] = {}
        self.started = time.time()
        self.epoch_at: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.joining = joining
        self.dkg = DkgDriver(
            self.ctx, self.links.round_echo, self._dkg_done, known_hostkeys=lambda: self.membership.known_hostkeys()
        )
        hooks = Hooks(
            dkg=self.dkg,
            activate=self._activate,
            request_signatures=lambda req, extra: self.signing.request_signatures(req, extra),  # late: replaceable
            no_answer=lambda wait: no_answer(self, wait),
            rpc=rpc,
            started=self.started,
        )
        self.membership = Membership(
            self.ctx,
            hooks,
            membership or MembershipSettings(),
            directory or {},
            bond_key,
            add_peer,
            bond_wallet if bond_wallet is not None or rpc is None else BitcoindBondWallet(rpc),
        )
        payouts = PayoutJudge(self.ctx, extra_policies)
        judges: dict[str, Judge] = {
            "payout": payouts,
            "psbt": payouts,
            "bump": payouts,
            "transition": SameCheck(self.membership.transition_tasks),
        }
        self.signing = RoastSigning(self.ctx, judges, catch_up=self.membership.tick)
        self._handlers: dict[str, Callable[[PeerId, Message], Any]] = {
            Kind.HEARTBEAT: self._on_heartbeat,
            Kind.ADDRESS: self._on_address,
        }

    # -- the epoch, as the parts share it --------------------------------------------------------

    @property
    def keys(self) -> EpochKeys | None:
        return self.ctx.keys

    @keys.setter
    def keys(self, keys: EpochKeys | None) -> None:
        self.ctx.keys = keys

    @property
    def members(self) -> list[PeerId]:
        return self.ctx.members

    @members.setter
    def members(self, members: list[PeerId]) -> None:
        self.ctx.members = list(members)

    @property
    def threshold(self) -> int:
        return self.ctx.threshold

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
            self.dkg.start(0, self.members, self.threshold, attempt)
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

    # -- incoming --------------------------------------------------------------------------------

    def _on_message(self, peer: PeerId, data: bytes) -> None:
        if peer not in self.members and peer not in self.membership.extra_peers():
            log.warning("message from non-member %s ignored", peer.hex()[:16])
            return
        self.last_seen[peer] = time.time()
        try:
            msg = decode(data)
            handler: Callable[[PeerId, Message], Any] | None = (
                self._handlers.get(msg.kind)
                or self.dkg.handlers.get(msg.kind)
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

    # -- liveness --------------------------------------------------------------------------------

    def _on_heartbeat(self, peer: PeerId, msg: Message) -> None:
        """Heartbeats carry the sender's epoch and the transaction that opened it, so a member that
        missed the end of a membership change learns where to look (it checks the chain itself)."""
        beat = Heartbeat.decode(msg)
        if beat.epoch is not None and beat.txid is not None:
            self.membership.hint(peer, beat.epoch, beat.txid)
        if beat.ledger is not None:  # its ledger digest: shown to the operator, nothing more
            health.on_heartbeat(self, peer, {health.HEARTBEAT_FIELD: beat.ledger})

    async def _heartbeat_loop(self) -> None:
        every = self.ctx.timing.heartbeat_seconds
        reconcile_every = max(1, int(5 / every))
        beat = 0
        while not self._stopping:
            try:
                await self._beat(beat, reconcile_every)
            except Exception:  # one failing beat must not silence the member for good
                log.exception("heartbeat failed")
            beat += 1
            await asyncio.sleep(every)

    async def _beat(self, beat: int, reconcile_every: int) -> None:
        """One heartbeat: tell the others this member is up, read new blocks into the chain index and
        the ledger, watch the DKG and any membership change."""
        await self.ctx.send_all_others(self._heartbeat())
        if self.chain is not None and beat % reconcile_every == 0:
            try:  # the chain index reads new blocks, the ledger counts what they paid
                await asyncio.to_thread(self.chain_view.refresh)
            except Exception as e:  # the chain source is down: try again later
                log.warning("chain index update failed: %s", e)
        self.dkg.tick(time.time())
        try:
            await self.membership.tick()
        except Exception:
            log.exception("membership check failed")

    def _heartbeat(self) -> Heartbeat:
        ledger = health.heartbeat_field(self)
        if self.keys is None:
            return Heartbeat(int(time.time()), ledger=ledger)
        rec = self.store.epoch(self.keys.epoch)
        txid = rec.activation_txid if rec is not None and rec.activation_txid else None
        return Heartbeat(int(time.time()), self.keys.epoch, txid, ledger)

    def online(self, peer: PeerId) -> bool:
        if peer == self.me:
            return True
        seen = self.last_seen.get(peer)
        return seen is not None and time.time() - seen < self.ctx.timing.offline_after_seconds

    # -- the epoch -------------------------------------------------------------------------------

    def _dkg_done(self, result: DkgResult, epoch: int) -> None:
        if epoch > 0:  # a membership change's new key: active only once its transition confirms
            self.membership.on_dkg_done(result, epoch)
            return
        rec = epoch_record(self.ctx, result, 0, "active")
        self.store.save_epoch(rec)
        log.info("epoch 0 established: group key %s", result.group_key.hex())
        self._activate(rec)

    def _activate(self, rec: EpochRecord) -> None:
        ctx = self.ctx
        ctx.secshare = self.sealer.open(rec.sealed_share or b"", seal_context(ctx, rec.epoch))
        ctx.keys = EpochKeys(
            rec.epoch, rec.members, rec.threshold, rec.group_key, rec.chain_code, rec.pubshares, self.network
        )
        ctx.members = list(rec.members)
        ctx.threshold = rec.threshold
        self.joining = False
        self.epoch_at = time.time()

    # -- addresses -------------------------------------------------------------------------------

    async def announce_address(self, epoch: int, index: int) -> None:
        """Tell the others an address index is taken, so every member's next address is a new one and
        every coordinator's coin scan covers it (two members handing out the same index at the same
        moment only reuse an address)."""
        await self.ctx.send_all_others(Address(epoch, index))

    def _on_address(self, peer: PeerId, msg: Message) -> None:
        keys = self.keys
        announced = Address.decode(msg)
        epoch, index = announced.epoch, announced.index
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
        if self.dkg.run is not None:
            return "dkg"
        return "joining" if self.joining else "starting"

    def status(self) -> dict[str, Any]:
        keys = self.keys
        now = time.time()
        return {
            "id": self.me.hex(),
            "epoch": keys.epoch if keys else None,
            "state": self._state(),
            "dkg_attempt": self.dkg.attempt if not keys else None,
            "dkg_error": self.dkg.error,
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

"""Drives this member's DKG attempts over the round echo broadcast, with no coordinator.

`DkgRun` is the sans-I/O ChillDKG of one attempt; this driver gives it its three echo-broadcast
sessions, moves every member to the highest attempt any member announces (`dkg_hello`), starts the
next attempt when one fails or makes no progress, and hands a member that missed the end the
public recovery data (`epoch_recovery`). It never decides what a finished key is for: `on_done`
receives the result (epoch 0 becomes active; a later epoch is a membership change's new key).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from frostfed.federation.context import MemberContext
from frostfed.federation.dkg_run import DkgFailed, DkgResult, DkgRun
from frostfed.federation.messages import DkgHello, EpochRecovery, Kind, Message
from frostfed.federation.store import EpochRecord
from frostfed.frost import chilldkg
from frostfed.net.channel import PeerId
from frostfed.net.round_echo import RoundEchoBroadcast

log = logging.getLogger(__name__)

ROUNDS = ("hostkey", "r1", "r2")


def echo_sid(session: str) -> bytes:
    """Echo-broadcast session ids are 32 bytes: the hash of the readable DKG session name."""
    return hashlib.sha256(session.encode()).digest()


def seal_context(ctx: MemberContext, epoch: int) -> bytes:
    """A sealed share opens only for its own epoch and member."""
    return b"frostfed/share/" + epoch.to_bytes(4, "big") + ctx.me


def epoch_record(ctx: MemberContext, result: DkgResult, epoch: int, status: str) -> EpochRecord:
    """What the store keeps of a finished DKG: the public key material and the sealed share."""
    return EpochRecord(
        epoch=epoch,
        status=status,
        members=result.members,
        threshold=result.threshold,
        group_key=result.group_key,
        chain_code=result.chain_code,
        pubshares=result.pubshares,
        recovery=result.recovery,
        sealed_share=ctx.sealer.seal(result.secshare, seal_context(ctx, epoch)),
    )


class DkgDriver:
    """One member's DKG: at most one attempt runs at a time.

    `on_done(result, epoch)` runs once an attempt ends with a key (also when it came from another
    member's recovery data); `on_failed(run, error)` after an attempt failed and the next began.
    `known_hostkeys()` gives the host keys this member already knows of members, so recovery data
    for another DKG with the same member ids is refused."""

    def __init__(
        self,
        ctx: MemberContext,
        echo: RoundEchoBroadcast,
        on_done: Callable[[DkgResult, int], None],
        on_failed: Callable[[DkgRun, DkgFailed], None] | None = None,
        known_hostkeys: Callable[[], dict[PeerId, bytes]] = dict,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.ctx = ctx
        self.echo = echo
        self.on_done = on_done
        self.on_failed = on_failed
        self.known_hostkeys = known_hostkeys
        self.clock = clock or time.time
        self.run: DkgRun | None = None
        self.attempt = 0  # the last attempt started (the status shows it)
        self.attempts_seen: dict[int, int] = {}  # epoch -> the highest attempt any member announced
        self.error: str | None = None
        self._sessions: dict[bytes, str] = {}
        self._progress = 0.0
        echo.on_deliver(self.on_broadcast)
        echo.on_abort(self.on_broadcast_abort)
        self.handlers: dict[str, Callable[[PeerId, Message], Any]] = {
            Kind.DKG_HELLO: self._on_hello,
            Kind.EPOCH_RECOVERY: self._on_recovery,
        }

    @property
    def last_progress(self) -> float:
        """When the current attempt last advanced (frost-status counts a wait from there)."""
        return self._progress

    def start(self, epoch: int, members: list[PeerId], threshold: int, attempt: int) -> None:
        """Start (or move to) DKG attempt `attempt` for `epoch` among `members`; everyone joins the
        highest attempt any member announces, so a member that restarted mid-DKG brings the others
        along instead of being left behind."""
        ctx = self.ctx
        self.stop()
        ctx.chain_view.note_epoch_start(epoch)
        self.attempt = attempt
        ctx.store.set_meta(f"dkg_attempt:{epoch}", str(attempt))
        run = self.run = DkgRun(epoch, attempt, list(members), threshold, ctx.me, ctx.host_seckey)
        self._progress = self.clock()
        self._sessions = {}
        for rnd in ROUNDS:
            name = run.session(rnd)
            self._sessions[echo_sid(name)] = name
            self.echo.start_session(echo_sid(name), members)
        hello = DkgHello(epoch, attempt)
        for m in members:
            if m != ctx.me:
                ctx.send_later(m, hello)
        for session, payload in run.start():
            ctx.spawn(self.echo.broadcast(echo_sid(session), payload))

    def stop(self) -> None:
        if self.run is not None:
            for rnd in ROUNDS:
                self.echo.close_session(echo_sid(self.run.session(rnd)))
        self.run = None
        self._sessions = {}

    def tick(self, now: float) -> None:
        """An attempt that made no progress for the DKG timeout is given up: the next one starts."""
        run = self.run
        if run is not None and now - self._progress > self.ctx.timing.dkg_timeout:
            log.warning("DKG attempt %d made no progress; starting the next", run.attempt)
            self.start(run.epoch, run.members, run.threshold, run.attempt + 1)

    # -- the echo broadcast's deliveries ---------------------------------------------------------

    def on_broadcast(self, session_id: bytes, sender: PeerId, payload: bytes) -> None:
        run = self.run
        session = self._sessions.get(session_id)
        if run is None or session is None:
            return
        self._progress = self.clock()
        try:
            out = run.on_delivered(session, sender, payload)
        except DkgFailed as e:
            self._failed(run, e)
            return
        for s, p in out:
            self.ctx.spawn(self.echo.broadcast(echo_sid(s), p))
        if run.result is not None:
            self._done(run.result, run.epoch)

    def on_broadcast_abort(self, session_id: bytes, proof: Any) -> None:
        run = self.run
        if run is not None and session_id in self._sessions:
            self._failed(run, DkgFailed("equivocation in an echo broadcast", proof.sender))

    def _failed(self, run: DkgRun, e: DkgFailed) -> None:
        blame = f" (blames {e.blame.hex()})" if e.blame else ""
        self.error = f"DKG attempt {run.attempt} failed: {e.reason}{blame}"
        log.error(self.error)
        if self.run is run:
            self.start(run.epoch, run.members, run.threshold, run.attempt + 1)
        if self.on_failed is not None:
            self.on_failed(run, e)

    def _done(self, result: DkgResult, epoch: int) -> None:
        self.run = None
        self.error = None
        self.on_done(result, epoch)

    # -- messages --------------------------------------------------------------------------------

    def _on_hello(self, peer: PeerId, msg: Message) -> None:
        hello = DkgHello.decode(msg)
        epoch, attempt = hello.epoch, hello.attempt
        run = self.run
        self.attempts_seen[epoch] = max(attempt, self.attempts_seen.get(epoch, 0))
        if run is not None and run.epoch == epoch:
            if attempt > run.attempt and peer in run.members:
                self.start(epoch, run.members, run.threshold, attempt)
            elif attempt < run.attempt and peer in run.members:  # bring it to the current attempt
                self.ctx.send_later(peer, DkgHello(epoch, run.attempt))
            return
        rec = self.ctx.store.epoch(epoch)
        if rec is not None and peer in rec.members:  # it missed the end: give it the recovery data
            self.ctx.send_later(peer, EpochRecovery(epoch, rec.recovery))

    def _on_recovery(self, peer: PeerId, msg: Message) -> None:
        """A member that finished a DKG shares its (public) recovery data with one that did not."""
        run = self.run
        epoch = msg.integer("epoch", 0, 2**31)
        if run is None or run.epoch != epoch or peer not in run.members:
            return
        recovery = EpochRecovery.decode(msg).recovery
        try:
            out, params = chilldkg.participant_recover(self.ctx.host_seckey, recovery)
        except Exception as e:
            log.warning("recovery data from %s refused: %s", peer.hex()[:16], e)
            return
        known = {**self.known_hostkeys(), **run.hostkeys}
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
        self._done(result, epoch)

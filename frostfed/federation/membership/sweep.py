"""After a change: the retired epoch's share is deleted once its coins are all gone, and a member that
stayed offline too long is proposed for expulsion, on this member's own offline clock."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from typing import TYPE_CHECKING

from frostfed.bitcoin.chain import ChainError
from frostfed.federation.change_judgement import OfflineClock
from frostfed.federation.store import EpochRecord

if TYPE_CHECKING:
    from frostfed.federation.context import MemberContext
    from frostfed.federation.membership.machine import Machine

log = logging.getLogger(__name__)

PeerId = bytes


def sweep_check(ctx: MemberContext, machine: Machine) -> bool:
    """Delete a retired epoch's share once the chain index shows no coin left at any of its addresses
    (every index ever used, and the look-ahead past them), and only if this member checked the
    transition that retired it. Until then the share stays sealed in the store: the old epoch's
    members can still move what is left (a young coinbase, a late payment). Runs in a worker thread;
    False: the chain could not be read."""
    store = ctx.store
    if ctx.chain is None:
        return True
    try:
        ctx.chain_view.refresh()
    except ChainError:
        return False
    for rec in store.epochs():
        if rec.status != "retired" or rec.sealed_share is None:
            continue
        retired_by = machine.activated(rec.epoch + 1)
        if retired_by is None or not (retired_by.activation or {}).get("judged"):
            continue
        if rec.epoch not in ctx.chain_view.index.watched_epochs() or ctx.chain_view.coins(rec.epoch):
            continue
        store.save_epoch(EpochRecord(**{**rec.__dict__, "sealed_share": None}))
        store.scrub()
        log.info("epoch %d holds no coin any more: its key share is deleted", rec.epoch)
    return True


class OfflineWatch:
    """This member's own offline clock of every peer, kept in the store (a crash loses at most 5 s of
    an outage, never a return). No peer counts as offline before the liveness window has passed since
    `started` (the member had no chance to hear it yet)."""

    def __init__(self, ctx: MemberContext, started: float) -> None:
        self.ctx = ctx
        self.started = started
        self.clock = OfflineClock(ctx.store.offline_seconds())
        self._saved = 0.0

    @property
    def offline(self) -> dict[PeerId, float]:
        return self.clock.offline

    def seconds(self, peer: PeerId) -> float:
        return self.clock.seconds(peer)

    def watch(self) -> None:
        ctx = self.ctx
        keys = ctx.keys
        if keys is None:
            return
        now = time.time()
        online = {m: ctx.online(m) for m in keys.members if m != ctx.me}
        reset = self.clock.tick(now, online, now - self.started > ctx.timing.offline_after_seconds)
        if reset or now - self._saved > 5:
            self.save()

    def save(self) -> None:
        with contextlib.suppress(sqlite3.Error):  # a closed store at shutdown: nothing more to keep
            self.ctx.store.save_offline_seconds(self.clock.offline)
        self._saved = time.time()


def expel_candidate(
    members: list[PeerId], me: PeerId, online: dict[PeerId, bool], watch: OfflineWatch, limit: float, margin: float
) -> PeerId | None:
    """The member to propose for expulsion, offline on this member's clock for `limit` (+ `margin`: the
    others' clocks may lag this one's by a heartbeat or so). Only the first online member (in member
    order) proposes, so members do not race."""
    if limit <= 0:
        return None
    up = [m for m in members if online.get(m, m == me)]
    if not up or up[0] != me:
        return None
    return next((m for m in members if m != me and watch.seconds(m) >= limit + margin), None)

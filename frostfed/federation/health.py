"""What an operator reads in `frost-status` to know a member is healthy: its chain source, the
federation's coins in its own chain index, and how far the other members' ledgers agree with its own.

Ledger agreement: every heartbeat carries a digest of the sender's ledger (one hash over what each
miner was credited, one over what the chain shows paid to each, with the chain index height the
latter was read at). A member compares the digests it receives with its own and lists the members
whose ledgers differ. A peer's digest is information for the operator only: nothing is ever signed,
refused or released on its word (a malicious member can send any digest), and a malformed one is
dropped with a rate-limited log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

from frostfed.bitcoin.chain_index_schema import COINBASE_MATURITY

log = logging.getLogger(__name__)

HEARTBEAT_FIELD = "ledger"
DIGEST_TTL = 5.0
"""Seconds the member's own digest is reused in heartbeats (a pool's ledger may hold many miners)."""
PROBE_TIMEOUT = 10.0
"""Seconds a probe waits for the chain source before it reports it unreachable."""
PROBE_EVERY = 2.0
"""`frost-status` answers from the last probe and starts a new one when that is older than this: a slow
chain source never makes the status slow."""
LOG_EVERY = 60.0
"""Seconds between two log lines about malformed digests from the same member."""
_MAX_HEIGHT = 100_000_000
_MAX_DEBTS = 10**9
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class LedgerDigest:
    height: int  # the chain index height the paid amounts were read at
    debts: int  # miners the ledger holds a debt for
    credited: str  # sha256 over (script, credited) of every debt, in script order
    paid: str  # sha256 over (script, paid by confirmed federation transactions)

    def to_body(self) -> dict[str, Any]:
        return {"h": self.height, "n": self.debts, "c": self.credited, "p": self.paid}

    @classmethod
    def from_body(cls, raw: Any) -> LedgerDigest:
        """A peer's digest, every field checked; ValueError names what is wrong."""
        if not isinstance(raw, dict) or set(raw) != {"h", "n", "c", "p"}:
            raise ValueError("the ledger digest must hold exactly h, n, c and p")
        h, n, c, p = raw["h"], raw["n"], raw["c"], raw["p"]
        for name, v, hi in (("h", h, _MAX_HEIGHT), ("n", n, _MAX_DEBTS)):
            if isinstance(v, bool) or not isinstance(v, int) or not -1 <= v <= hi:
                raise ValueError(f"ledger digest field {name} is not a count")
        for name, v in (("c", c), ("p", p)):
            if not isinstance(v, str) or len(v) != 64 or not _HEX.issuperset(v):
                raise ValueError(f"ledger digest field {name} is not a 32-byte hash in lowercase hex")
        return cls(h, n, c, p)


def ledger_digest(rows: list[tuple[bytes, int, int]], height: int) -> LedgerDigest:
    """The digest of (script, credited, paid) rows: ordered by script, so every member hashes alike."""
    credited, paid = hashlib.sha256(b"frostfed/ledger/credited"), hashlib.sha256(b"frostfed/ledger/paid")
    for script, c, p in sorted(rows):
        prefix = len(script).to_bytes(2, "big") + script
        credited.update(prefix + c.to_bytes(16, "big"))
        paid.update(prefix + p.to_bytes(16, "big"))
    return LedgerDigest(height, len(rows), credited.hexdigest(), paid.hexdigest())


@dataclass
class _PeerDigest:
    digest: LedgerDigest
    at: float


class Health:
    """One member's health record: what its chain source last answered, the digests its peers sent."""

    def __init__(self, member: Any) -> None:
        self._member = weakref.ref(member)
        self.peers: dict[bytes, _PeerDigest] = {}
        self._own: tuple[float, LedgerDigest] | None = None
        self._logged: dict[bytes, float] = {}
        self.chain_ok: bool | None = None
        self.chain_tip: int | None = None
        self.chain_error: str | None = None
        self.chain_error_at: float | None = None
        self.checked_at: float | None = None
        self._probe: asyncio.Task[None] | None = None

    @property
    def member(self) -> Any:
        m = self._member()
        assert m is not None
        return m

    # -- the ledger digest ---------------------------------------------------------------------

    def own_digest(self, fresh: bool = False) -> LedgerDigest | None:
        member = self.member
        if member.ledger is None:
            return None
        now = time.monotonic()
        if not fresh and self._own is not None and now - self._own[0] < DIGEST_TTL:
            return self._own[1]
        digest = ledger_digest(member.ledger.debt_rows(), member.chain_view.index.tip_height())
        self._own = (now, digest)
        return digest

    def heartbeat_field(self) -> dict[str, Any] | None:
        try:
            digest = self.own_digest()
        except Exception as e:  # a busy or broken ledger must not stop the heartbeat
            log.warning("ledger digest unavailable: %s", e)
            return None
        return None if digest is None else digest.to_body()

    def on_heartbeat(self, peer: bytes, body: dict[str, Any]) -> None:
        raw = body.get(HEARTBEAT_FIELD)
        if raw is None:
            return
        try:
            digest = LedgerDigest.from_body(raw)
        except ValueError as e:
            now = time.monotonic()
            if now - self._logged.get(peer, -LOG_EVERY) >= LOG_EVERY:
                self._logged[peer] = now
                log.warning("ledger digest from %s ignored: %s", peer.hex()[:16], e)
            return
        self.peers[peer] = _PeerDigest(digest, time.time())

    def agreement(self) -> dict[str, Any]:
        """Per member of the epoch: do its credits agree, do its payments (at the same height)."""
        member = self.member
        own = self.own_digest(fresh=True)
        if own is None:
            return {"ledger": False}
        now = time.time()
        rows, differ = [], []
        for m in member.members:
            if m == member.me:
                continue
            seen = self.peers.get(m)
            if seen is None:
                rows.append({"id": m.hex(), "digest": None})
                continue
            d = seen.digest
            credits = "agree" if d.credited == own.credited else "differ"
            paid = "other height" if d.height != own.height else "agree" if d.paid == own.paid else "differ"
            if "differ" in (credits, paid):
                differ.append(m.hex())
            rows.append(
                {
                    "id": m.hex(),
                    "credits": credits,
                    "paid": paid,
                    "height": d.height,
                    "debts": d.debts,
                    "seconds_ago": round(now - seen.at, 1),
                }
            )
        return {
            "height": own.height,
            "debts": own.debts,
            "credited_digest": own.credited,
            "paid_digest": own.paid,
            "members": rows,
            "differ": differ,
        }

    # -- the chain -----------------------------------------------------------------------------

    def note_chain(self, tip: int | None, error: str | None) -> None:
        self.checked_at = time.time()
        self.chain_ok = error is None
        if error is None:
            self.chain_tip = tip
        else:
            self.chain_error, self.chain_error_at = error, self.checked_at

    async def probe_chain(self) -> None:
        chain = self.member.chain
        if chain is None:
            self.note_chain(None, "this member has no chain source")
            return
        try:
            tip = await asyncio.wait_for(asyncio.to_thread(chain.tip_height), PROBE_TIMEOUT)
        except TimeoutError:
            self.note_chain(None, f"the chain source did not answer within {PROBE_TIMEOUT:.0f} s")
        except Exception as e:
            self.note_chain(None, str(e) or type(e).__name__)
        else:
            self.note_chain(tip, None)

    def chain_status(self) -> dict[str, Any]:
        member = self.member
        return {
            "network": member.network,
            "reachable": self.chain_ok,
            "tip_height": self.chain_tip,
            "indexed_height": member.chain_view.index.tip_height(),
            "last_error": self.chain_error,
            "last_error_at": self.chain_error_at,
            "checked_seconds_ago": None if self.checked_at is None else round(time.time() - self.checked_at, 1),
        }

    def balance(self) -> dict[str, Any]:
        """The federation's unspent coins in this member's own index, by every epoch it watches:
        confirmed (spendable by the policy), immature (block rewards under 100 confirmations) and
        pending (in a block, with fewer confirmations than the policy's minimum)."""
        member = self.member
        index = member.chain_view.index
        tip = index.tip_height()
        need = member.policy_settings.min_confirmations
        out = {"confirmed_sats": 0, "immature_sats": 0, "pending_sats": 0, "coins": 0}
        for epoch in index.watched_epochs():
            for coin in index.coins(epoch):
                conf = coin.confirmations(tip)
                if coin.coinbase and conf < COINBASE_MATURITY:
                    out["immature_sats"] += coin.sats
                elif conf < need:
                    out["pending_sats"] += coin.sats
                else:
                    out["confirmed_sats"] += coin.sats
                out["coins"] += 1
        return out

    def refresh_chain(self) -> None:
        """Start a probe in the background unless one runs or the last is recent."""
        if self._probe is not None and not self._probe.done():
            return
        if self.checked_at is not None and time.time() - self.checked_at < PROBE_EVERY:
            return
        self._probe = asyncio.get_running_loop().create_task(self.probe_chain())

    async def status(self) -> dict[str, Any]:
        if self.checked_at is None:  # nothing known yet: wait for the first answer (bounded)
            if self._probe is not None and not self._probe.done():
                await asyncio.shield(self._probe)
            else:
                await self.probe_chain()
        else:
            self.refresh_chain()
        return {"chain": self.chain_status(), "balance": self.balance(), "ledger_agreement": self.agreement()}


_records: weakref.WeakKeyDictionary[Any, Health] = weakref.WeakKeyDictionary()


def of(member: Any) -> Health:
    """The member's health record, made on first use (the member itself holds no reference to it)."""
    health = _records.get(member)
    if health is None:
        health = _records[member] = Health(member)
    return health


def heartbeat_field(member: Any) -> dict[str, Any] | None:
    """What the heartbeat carries for the other members' ledger comparison (None: no ledger)."""
    return of(member).heartbeat_field()


def on_heartbeat(member: Any, peer: bytes, body: dict[str, Any]) -> None:
    of(member).on_heartbeat(peer, body)


def check_chain_at_start(member: Any) -> None:
    """Say loudly, at start, that the chain source cannot be reached: the member starts anyway (bitcoind
    may come up later) and keeps retrying, but its operator must not learn it from the log alone. Runs
    in the background, so a slow chain source does not hold the start up."""
    record = of(member)
    record._probe = asyncio.get_running_loop().create_task(_say_at_start(record))


async def _say_at_start(record: Health) -> None:
    await record.probe_chain()
    if record.chain_ok:
        log.info("chain source answers: tip at height %s", record.chain_tip)
    else:
        log.error(
            "THE CHAIN SOURCE CANNOT BE REACHED: %s. The member runs, but signs nothing until it reads the chain; "
            "frost-status shows the last error.",
            record.chain_error,
        )

"""A scripted network of `RoastSigning` members for fast unit tests: real ROAST cores, real SQLite stores
and nonce journals, an in-memory chain (`fake_chain`), and a network the test controls.

Every message goes through the wire encoding and into `Net.sent`, then to the receiver's handler, one
at a time (in order, unless a rule drops, changes or duplicates it). A member here is only its signing
part over a `MemberContext`, the way `node.Member` wires it; a judge is scripted (approve or refuse)
but computes the sighashes from the fake chain, as a member's policy does from its own chain source."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitcoin.core import CMutableTransaction, COutPoint, CTransaction, CTxIn, CTxOut, b2lx, lx
from bitcoin.core.script import CScript
from dealer import trusted_dealer
from fake_chain import FakeChain, payment, script

from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, taproot_sighash
from frostfed.federation.config import PolicySettings
from frostfed.federation.context import MemberContext, Timing
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.messages import Message, decode, encode
from frostfed.federation.roast_signing import RoastSigning
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.store import Store
from frostfed.frost.roast import SigningTask
from frostfed.net.channel import PeerId

MINER = script("miner")


class BroadcastChain(FakeChain):
    """The fake chain, keeping what was broadcast (the tests check it is the signed transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.broadcasts: list[CTransaction] = []

    def broadcast(self, tx: CTransaction) -> str:
        self.broadcasts.append(tx)
        return b2lx(tx.GetTxid())


class View:
    """A member's chain view, as far as signing reads it: which confirmed transaction spent a coin.
    (The real chain index derives a thousand scripts to watch: too slow for a unit test.)"""

    def __init__(self, chain: FakeChain) -> None:
        self.chain = chain
        self.index = self
        self.refreshed = 0

    def refresh(self) -> list[str]:
        self.refreshed += 1
        return []

    def spender(self, outpoint: tuple[str, int]) -> str | None:
        for block in self.chain.blocks:
            for tx in block.txs:
                if any((b2lx(i.prevout.hash), i.prevout.n) == outpoint for i in tx.vin):
                    return b2lx(tx.GetTxid())
        return None


class ScriptedJudge:
    """Sighashes from the chain's spent outputs; `refuse` makes the signer refuse with that reason."""

    def __init__(self, chain: FakeChain, ctx: MemberContext) -> None:
        self.chain = chain
        self.ctx = ctx
        self.refuse: str | None = None
        self.approved: list[str] = []

    def coordinate(self, req: SigningRequest) -> list[SigningTask]:
        keys = self.ctx.keys
        assert keys is not None
        spent = []
        for txin in req.tx.vin:
            utxo = self.chain.get_utxo(b2lx(txin.prevout.hash), txin.prevout.n)
            if utxo is None:
                raise PolicyRejection("input_missing", "an input is not in the UTXO set")
            spent.append(CTxOut(utxo.amount_sats, CScript(utxo.script_pubkey)))
        return [keys.task(path, taproot_sighash(req.tx, i, spent, SIGHASH_DEFAULT)) for i, path in req.fed_inputs]

    def approve(self, req: SigningRequest) -> list[SigningTask]:
        if self.refuse is not None:
            raise PolicyRejection("scripted", self.refuse)
        self.approved.append(req.id)
        return self.coordinate(req)

    def close(self) -> None:
        pass


@dataclass
class Sent:
    sender: PeerId
    to: PeerId
    kind: str
    body: dict[str, Any]


@dataclass
class Node:
    ctx: MemberContext
    signing: RoastSigning
    judge: ScriptedJudge

    @property
    def store(self) -> Store:
        return self.ctx.store


Rule = Callable[[Sent], list[Sent]]  # what actually arrives for a message sent: [], [it], [changed], [it, it]


@dataclass
class Net:
    tmp: Path
    n: int = 3
    t: int = 2
    request_timeout: float = 2.0
    nodes: dict[PeerId, Node] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    extra: dict[PeerId, list[Sent]] = field(default_factory=dict)  # to peers that are not nodes (the test)

    def __post_init__(self) -> None:
        dealt = trusted_dealer(self.t, self.n, seed=14)
        self.ids = [bytes([2]) + hashlib.sha256(bytes([i])).digest() for i in range(self.n)]
        self.keys = EpochKeys(0, self.ids, self.t, dealt.thresh_pk, b"\x07" * 32, dealt.pubshares)
        self.secshares = dict(zip(self.ids, dealt.secshares, strict=True))
        self.chain = BroadcastChain()
        self.coins = []
        for i in range(4):
            tx = payment([(self.keys.script((0, i)), 100_000)], salt=i)
            self.coins.append((b2lx(tx.GetTxid()), 0))
            self.chain.add([tx])
        self._queue: asyncio.Queue[Sent] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        for peer in self.ids:
            self.nodes[peer] = self.node(peer)

    def node(self, peer: PeerId, store: Store | None = None) -> Node:
        ctx = MemberContext(
            me=peer,
            host_seckey=b"",
            sealer=None,  # type: ignore[arg-type] - signing never seals
            store=store or Store(self.tmp / f"{peer.hex()[:8]}.sqlite"),
            chain=self.chain,
            chain_view=View(self.chain),  # type: ignore[arg-type]
            ledger=None,
            network="regtest",
            policy=PolicySettings(),
            timing=Timing(request_timeout=self.request_timeout),
            send_raw=lambda to, kind, body: self._send(peer, to, kind, body),
            spawn=self._spawn,
            online=lambda _: True,
            members=list(self.ids),
            threshold=self.t,
            keys=self.keys,
            secshare=self.secshares[peer],
        )
        judge = ScriptedJudge(self.chain, ctx)
        return Node(ctx, RoastSigning(ctx, {"payout": judge, "psbt": judge}), judge)

    def __getitem__(self, i: int) -> Node:
        return self.nodes[self.ids[i]]

    def request(
        self, rid: str = "r1", coin: int = 0, kind: str = "payout", deadline: int | None = None
    ) -> SigningRequest:
        tx = CMutableTransaction([CTxIn(COutPoint(lx(self.coins[coin][0]), 0))], [CTxOut(90_000, CScript(MINER))])
        return SigningRequest(rid, 0, kind, CTransaction.from_tx(tx), ((0, coin),), {}, deadline=deadline)

    # -- the wire --------------------------------------------------------------------------------

    async def _send(self, sender: PeerId, to: PeerId, kind: str, body: dict[str, Any]) -> None:
        sent = Sent(sender, to, str(kind), json.loads(json.dumps(body)))
        self.sent.append(sent)
        arriving = [sent]
        for rule in self.rules:
            arriving = [after for a in arriving for after in rule(a)]
        for a in arriving:
            self._queue.put_nowait(a)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def deliver(self, m: Sent) -> None:
        """Hand one message to its receiver's handler (a handler's coroutine runs to its end here)."""
        node = self.nodes.get(m.to)
        if node is None:
            self.extra.setdefault(m.to, []).append(m)
            return
        msg = decode(encode(m.kind, m.body))
        result = node.signing.handlers[msg.kind](m.sender, msg)
        if asyncio.iscoroutine(result):
            await result

    async def pump(self) -> None:
        while True:
            await self.deliver(await self._queue.get())

    async def settle(self) -> None:
        """Deliver until nothing is in flight."""
        for _ in range(1000):
            while not self._queue.empty():
                await self.deliver(self._queue.get_nowait())
            if self._queue.empty() and not self._tasks:
                return
            await asyncio.sleep(0.001)
        raise AssertionError("the network never settled")

    def to(self, kind: str, to: PeerId | None = None) -> list[Sent]:
        return [s for s in self.sent if s.kind == kind and (to is None or s.to == to)]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for node in self.nodes.values():
            node.signing.close()
            node.store.close()


def message(kind: str, body: dict[str, Any]) -> Message:
    return decode(encode(kind, body))


def nonce_rows(store: Store, rid: str) -> list[str]:
    """The journal's statuses of a request's nonces, oldest first, read from the database file."""
    db = sqlite3.connect(store.path)
    try:
        rows = db.execute("SELECT status FROM nonces WHERE request_id = ? ORDER BY created", (rid,)).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]

"""Signing requests that reach a member late (it was offline; the reliable layer delivered them on its
return): past the deadline the coordinator set, or already settled on chain, they are dropped without a
judgement, an answer or a record. Fresh ones are judged as before."""

from __future__ import annotations

import time
from types import SimpleNamespace

from bitcoin.core import CMutableTransaction, COutPoint, CTxIn, CTxOut, b2lx, lx
from fake_chain import FakeChain, payment, script, spend

from frostfed.bitcoin.chain import ChainError
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.federation.messages import Message
from frostfed.federation.roast_signer import CLOCK_SKEW
from frostfed.federation.roast_signing import RoastSigning
from frostfed.federation.signing_request import SigningRequest

PEER = bytes([2]) + b"\x01" * 32
MINER = script("miner")


def fed_script(chain: int, idx: int) -> bytes:
    return script(f"e0/{chain}/{idx}")


def request(deadline: int | None, coin: tuple[str, int] = ("11" * 32, 0), salt: int = 0) -> SigningRequest:
    tx = CMutableTransaction([CTxIn(COutPoint(lx(coin[0]), coin[1]))], [CTxOut(50_000 + salt, MINER)])
    return SigningRequest("r1", 0, "payout", tx, ((0, 0),), {}, None, None, deadline)


class View:
    """The member's chain view over a real index of an in-memory chain (or a chain source that fails)."""

    def __init__(self, chain: FakeChain, broken: bool = False) -> None:
        self.chain = chain
        self.broken = broken
        self.index = ChainIndex(":memory:")
        self.index.watch(0, fed_script, 0)
        self.refreshed = 0

    def refresh(self) -> list[str]:
        self.refreshed += 1
        if self.broken:
            raise ChainError("bitcoind unreachable")
        self.index.sync(self.chain)
        return []


def signing(view: View) -> RoastSigning:
    return RoastSigning(SimpleNamespace(chain_view=view), {})  # type: ignore[arg-type]


def funded_chain() -> tuple[FakeChain, tuple[str, int]]:
    chain = FakeChain()
    tx = payment([(fed_script(0, 0), 100_000)])
    chain.add([tx])
    return chain, (b2lx(tx.GetTxid()), 0)


def test_the_deadline_travels_with_the_request() -> None:
    req = request(1_900_000_000)
    back = SigningRequest.from_message(Message("sign_request", req.to_body()))
    assert back.deadline == 1_900_000_000
    legacy = req.to_body()
    del legacy["deadline"]
    assert SigningRequest.from_message(Message("sign_request", legacy)).deadline is None


async def test_a_request_past_its_deadline_is_dropped_without_asking_the_chain() -> None:
    chain, coin = funded_chain()
    view = View(chain)
    assert await signing(view)._late(PEER, request(int(time.time() - CLOCK_SKEW - 5), coin)) is True
    assert view.refreshed == 0


async def test_a_request_settled_on_chain_is_dropped() -> None:
    chain, coin = funded_chain()
    req = request(int(time.time() + 30), coin)
    chain.add([spend([coin], [(MINER, 50_000), (fed_script(1, 0), 49_000)])])  # it (or a rival) confirmed
    assert await signing(View(chain))._late(PEER, req) is True
    undated = request(None, coin, salt=1)  # from a member that sets no deadline: settled all the same
    assert await signing(View(chain))._late(PEER, undated) is True


async def test_a_fresh_request_is_judged() -> None:
    chain, coin = funded_chain()
    req = request(int(time.time() + 60), coin)
    for view in (View(chain), View(chain, broken=True)):  # a chain that fails is no reason to drop
        assert await signing(view)._late(PEER, req) is False
    assert await signing(View(chain))._late(PEER, request(None, coin)) is False

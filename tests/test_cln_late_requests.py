"""Signing requests that reach a member late (it was offline; the reliable layer delivered them on its
return): past the deadline the coordinator set, or already settled on chain, they are dropped without a
judgement, an answer or a record. Fresh ones are judged as before."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from bitcoin.core import CMutableTransaction, COutPoint, CTxIn, CTxOut, b2lx, lx

from frostfed.bitcoin.chain import ChainError, Utxo
from frostfed.federation.messages import Message
from frostfed.federation.roast_signing import CLOCK_SKEW, RoastSigning
from frostfed.federation.signing_request import SigningRequest

PEER = bytes([2]) + b"\x01" * 32


def request(deadline: int | None) -> SigningRequest:
    tx = CMutableTransaction(
        [CTxIn(COutPoint(lx("11" * 32), 0))], [CTxOut(50_000, bytes.fromhex("5120" + "22" * 32))]
    )
    return SigningRequest("r1", 0, "payout", tx, ((0, 0),), {}, None, deadline)


class Chain:
    def __init__(self, on_chain: set[tuple[str, int]], broken: bool = False) -> None:
        self.on_chain = on_chain
        self.broken = broken
        self.asked: list[tuple[str, int]] = []

    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        self.asked.append((txid, vout))
        if self.broken:
            raise ChainError("bitcoind unreachable")
        return Utxo(txid, vout, 50_000, b"", 1, False) if (txid, vout) in self.on_chain else None


def signing(chain: Any) -> RoastSigning:
    return RoastSigning(SimpleNamespace(chain=chain, request_timeout=60.0))  # type: ignore[arg-type]


def test_the_deadline_travels_with_the_request() -> None:
    req = request(1_900_000_000)
    back = SigningRequest.from_message(Message("sreq", req.to_body()))
    assert back.deadline == 1_900_000_000
    legacy = req.to_body()
    del legacy["deadline"]
    assert SigningRequest.from_message(Message("sreq", legacy)).deadline is None


async def test_a_request_past_its_deadline_is_dropped_without_asking_the_chain() -> None:
    chain = Chain(set())
    late = request(int(time.time() - CLOCK_SKEW - 5))
    assert await signing(chain)._late(PEER, late) is True
    assert chain.asked == []


async def test_a_request_already_on_chain_is_dropped() -> None:
    req = request(int(time.time() + 30))
    chain = Chain({(b2lx(req.tx.GetTxid()), 0)})
    assert await signing(chain)._late(PEER, req) is True


async def test_a_fresh_request_is_judged() -> None:
    req = request(int(time.time() + 60))
    for chain in (Chain(set()), Chain(set(), broken=True)):  # a chain that fails is no reason to drop
        assert await signing(chain)._late(PEER, req) is False
    assert await signing(None)._late(PEER, req) is False
    undated = request(None)  # from a member that sets no deadline: judged, unless it is on chain already
    assert await signing(Chain(set()))._late(PEER, undated) is False
    assert await signing(Chain({(b2lx(undated.tx.GetTxid()), 0)}))._late(PEER, undated) is True

"""A running federation of member processes for the end-to-end tests, with the chores a pool would do:
crediting miners in every member's ledger and funding federation addresses."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from faulty_member import start_faulty

from frostfed.bitcoin.chain import ChainRpcError
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import script_from_address
from frostfed.plugin.localcluster import LocalMember, wait_for_epoch, write_cluster


class Cluster:
    def __init__(self, base: Path, btc: RegtestBitcoind, n: int, t: int, **kw: Any) -> None:
        self.btc = btc
        self.members = write_cluster(base, n, t, btc.rpc_port, btc.datadir / "regtest" / ".cookie", **kw)
        self.t = t

    def start(self, faults_for: dict[int, list[str]] | None = None) -> str:
        """Start every member (those in `faults_for` with those faults, see faulty_member); wait for epoch 0."""
        for m in self.members:
            faults = (faults_for or {}).get(m.index)
            if faults:
                start_faulty(m, *faults)
            else:
                m.start()
        for m in self.members:
            m.wait_ready()
        return wait_for_epoch(self.members)

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def running(self) -> list[LocalMember]:
        return [m for m in self.members if m.running]

    def credit(self, address: str, sats: int, members: list[LocalMember] | None = None) -> None:
        script = script_from_address(address, "regtest")
        for m in members if members is not None else self.members:
            ledger = Ledger(m.data_dir / "ledger.sqlite")
            try:
                ledger.credit(script, sats)
            finally:
                ledger.close()

    def fund(self, sats: int, via: LocalMember | None = None) -> str:
        """Send `sats` to a fresh federation address and confirm it; returns the address."""
        member = via or self.running()[0]
        address = member.call("frost-newaddr")["address"]
        self.btc.rpc("sendtoaddress", address, Decimal(sats) / Decimal(100_000_000), wallet="miner")
        self.btc.mine(1)
        return address

    def miner_address(self) -> str:
        return self.btc.rpc("getnewaddress", wallet="miner")

    def confirmations(self, txid: str) -> int:
        return self.btc.rpc("gettransaction", txid, wallet="miner").get("confirmations", 0)

    def received(self, address: str) -> int:
        return int(self.btc.rpc("getreceivedbyaddress", address, 0, wallet="miner") * 100_000_000)


def scan_descriptors(btc: RegtestBitcoind, descs: dict[str, Any]) -> int:
    """Sats at a federation epoch's receive and change addresses (0..50). Members scan too, and
    bitcoind runs one scan at a time: wait for a scan in progress."""
    wanted = [{"desc": descs["descriptor"], "range": 50}, {"desc": descs["change_descriptor"], "range": 50}]
    deadline = time.monotonic() + 30
    while True:
        try:
            return int(btc.rpc("scantxoutset", "start", wanted)["total_amount"] * 100_000_000)
        except ChainRpcError as e:
            if "in progress" not in e.message or time.monotonic() > deadline:
                raise
            time.sleep(0.1)

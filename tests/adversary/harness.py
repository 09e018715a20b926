"""A federation of member processes on the regtest bitcoind where chosen members run the attacker,
and readers of what the honest members themselves recorded (their SQLite stores and ledgers).

Assertions about an attack are made from these records and from the chain, never from what the
attacker reports."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, lx
from bitcoin.core.script import CScript
from federation_cluster import Cluster

from adversary.evilrpc import SOCKET_NAME as EVIL_SOCKET
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import script_from_address
from frostfed.plugin import rpcclient
from frostfed.plugin.localcluster import LocalMember

TESTS_DIR = Path(__file__).resolve().parent.parent
RBF = 0xFFFFFFFD

MEMBERSHIP = {
    "min_bond_sats": 50_000,
    "min_bond_blocks": 20,
    "transition_confirmations": 1,
    "change_timeout_seconds": 60.0,
    "min_change_interval_blocks": 6,
    "expel_after_seconds": 600,  # a member expels by itself only one it saw offline for 10 minutes
}
"""[membership] of the federations the membership attacks run against."""


class AttackerMember(LocalMember):
    """A LocalMember whose process is the attacker; `evil()` drives its second control socket."""

    def start(self, env: dict[str, str] | None = None) -> None:
        if self.socket.exists():
            self.socket.unlink()
        path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
        log = open(self.data_dir / "stderr.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adversary.attacker", "run", "--config", str(self.config)],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {}), "PYTHONPATH": path},
            start_new_session=True,
        )
        log.close()

    def evil(self, method: str, params: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        return rpcclient.call(self.data_dir / EVIL_SOCKET, method, params or {}, timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        super().wait_ready(timeout)
        deadline = time.monotonic() + timeout
        while not (self.data_dir / EVIL_SOCKET).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"attacker {self.index} did not open its evil socket")
            time.sleep(0.05)


class AdversaryCluster(Cluster):
    """`Cluster` with the members at `attackers` running the attacker process."""

    def __init__(self, base: Path, btc: RegtestBitcoind, n: int, t: int, attackers: Sequence[int] = (0,), **kw: Any):
        super().__init__(base, btc, n, t, **kw)
        for i in attackers:
            m = self.members[i]
            self.members[i] = AttackerMember(m.index, m.id, m.data_dir, m.config, m.port)
        self.attackers: list[AttackerMember] = [m for m in self.members if isinstance(m, AttackerMember)]
        self.honest: list[LocalMember] = [m for m in self.members if not isinstance(m, AttackerMember)]

    @property
    def attacker(self) -> AttackerMember:
        return self.attackers[0]

    def fund_coin(self, sats: int, confirmations: int = 1) -> dict[str, Any]:
        """A new federation coin of `sats` (through an honest member's address), as the attacker sees it."""
        address = self.honest[0].call("frost-newaddr")["address"]
        txid = self.btc.rpc("sendtoaddress", address, Decimal(sats) / Decimal(100_000_000), wallet="miner")
        self.btc.mine(confirmations)
        script = script_from_address(address, "regtest").hex()
        seen: list[dict[str, Any]] = []

        def probe() -> dict[str, Any] | None:
            seen[:] = self.attacker.evil("coins")
            return next((c for c in seen if c["txid"] == txid and c["script"] == script), None)

        try:
            return wait_for(probe, f"the attacker to see coin {txid}", 60)
        except TimeoutError as e:
            raw = self.btc.rpc("getrawtransaction", txid, True)
            raise TimeoutError(f"{e}: it sees {len(seen)} coins; the transaction is {raw}") from None

    def anchor_coin(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The epoch's anchor coin and its canonical change (`change_path`, `change_script`), as the
        attacker's own chain index shows them: what any payout honest members sign must spend."""
        anchor = wait_for(lambda: (a := self.attacker.evil("anchor"))["outpoint"] and a, "the anchor to exist", 60)
        def listed() -> dict[str, Any] | None:
            return next((c for c in self.attacker.evil("coins") if [c["txid"], c["vout"]] == anchor["outpoint"]), None)

        coin = wait_for(listed, "the attacker to list the anchor coin")
        return coin, anchor

    def honest_payout_succeeds(self, sats: int = 20_000, via: int = 0) -> None:
        """The federation still pays a real debt, coordinated by an honest member, and it confirms."""
        miner = self.miner_address()
        self.credit(miner, sats)
        result = self.honest[via].call("frost-payout", {"outputs": [{"address": miner, "sats": sats}]})
        assert result["status"] == "broadcast", result
        self.btc.mine(1)
        assert self.received(miner) == sats


# -- what honest members recorded ------------------------------------------------------------------


def _db(member: LocalMember, name: str = "frostfed.sqlite") -> sqlite3.Connection:
    return sqlite3.connect(f"file:{member.data_dir / name}?mode=ro", uri=True, timeout=10)


def nonces_for(member: LocalMember, request_id: str) -> list[str]:
    """Statuses of every nonce this member issued for the request (issued / used / discarded)."""
    with closing(_db(member)) as db:
        return [r[0] for r in db.execute("SELECT status FROM nonces WHERE request_id = ?", (request_id,))]


def honest_partial_signatures(member: LocalMember, request_id: str) -> int:
    """How many partial signatures the member made for the request: a nonce is journalled as used
    before any partial signature made with it leaves the process."""
    return nonces_for(member, request_id).count("used")


def nonce_used_for(member: LocalMember, request_id: str) -> bool:
    return honest_partial_signatures(member, request_id) > 0


def request_record(member: LocalMember, request_id: str) -> dict[str, Any] | None:
    """The member's own row for the request: status, coordinator and the outcome (with `reason`)."""
    with closing(_db(member)) as db:
        row = db.execute(
            "SELECT status, coordinator, outcome, kind FROM requests WHERE id = ?", (request_id,)
        ).fetchone()
    if row is None:
        return None
    outcome = json.loads(row[2]) if row[2] else {}
    return {
        "status": row[0],
        "coordinator": row[1],
        "outcome": outcome,
        "kind": row[3],
        "reason": outcome.get("reason", ""),
    }


def refusal_code(member: LocalMember, request_id: str) -> str | None:
    rec = request_record(member, request_id)
    if rec is None or rec["status"] != "refused":
        return None
    return rec["reason"].split(":", 1)[0]


def wait_for_refusals(members: Sequence[LocalMember], request_id: str, timeout: float = 30) -> dict[int, str]:
    """Wait until each member has recorded its answer to the request; returns index -> refusal code
    ('' for a member that accepted)."""

    def answered() -> dict[int, str] | None:
        recs = {m.index: request_record(m, request_id) for m in members}
        if any(r is None for r in recs.values()):
            return None
        return {i: (r["reason"].split(":", 1)[0] if r["status"] == "refused" else "") for i, r in recs.items()}

    return wait_for(answered, f"members {[m.index for m in members]} to answer {request_id}", timeout)


def ledger_reserved(member: LocalMember) -> list[str]:
    with closing(_db(member, "ledger.sqlite")) as db:
        return [r[0] for r in db.execute("SELECT txid FROM reserved")]


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- building requests with any fields ------------------------------------------------------------


def address_script(address: str) -> bytes:
    return script_from_address(address, "regtest")


def build_tx(
    coins: Sequence[dict[str, Any]],
    outputs: Sequence[tuple[bytes, int]],
    version: int = 2,
    locktime: int = 0,
    sequence: int = RBF,
) -> CTransaction:
    vin = [CTxIn(COutPoint(lx(c["txid"]), c["vout"]), nSequence=sequence) for c in coins]
    vout = [CTxOut(sats, CScript(script)) for script, sats in outputs]
    return CTransaction(vin, vout, locktime, version)


_counter = [0]


def anchored_payout(
    fed: AdversaryCluster,
    payouts: Sequence[tuple[bytes, int]],
    fee: int = 500,
    more_coins: Sequence[dict[str, Any]] = (),
    **tx_fields: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request spending the anchor (and `more_coins`) to `payouts`, the rest less `fee` to the
    canonical change: the shape honest members sign when the payouts are owed. Returns (request
    body, anchor coin)."""
    coin, anchor = fed.anchor_coin()
    coins = [coin, *more_coins]
    change = sum(c["sats"] for c in coins) - sum(sats for _, sats in payouts) - fee
    tx = build_tx(coins, [*payouts, (bytes.fromhex(anchor["change_script"]), change)], **tx_fields)
    epoch = fed.attacker.evil("keys")["epoch"]
    return request_body(tx, coins, epoch, change_paths={len(payouts): anchor["change_path"]}), coin


def request_body(
    tx: CTransaction,
    coins: Sequence[dict[str, Any]],
    epoch: int,
    kind: str = "payout",
    change_paths: dict[int, Sequence[int]] | None = None,
    rid: str | None = None,
) -> dict[str, Any]:
    """A SigningRequest body (as `SigningRequest.to_body`) for `tx` spending `coins` in order."""
    _counter[0] += 1
    return {
        "id": rid or f"evil-{os.getpid()}-{int(time.time() * 1000)}-{_counter[0]}",
        "epoch": epoch,
        "kind": kind,
        "tx": tx.serialize().hex(),
        "input_paths": [list(c["path"]) for c in coins],
        "change_paths": {str(k): list(v) for k, v in (change_paths or {}).items()},
    }


def unspent(btc: RegtestBitcoind, coin: dict[str, Any]) -> bool:
    return btc.rpc("gettxout", coin["txid"], coin["vout"], True) is not None


def log_count(member: LocalMember, text: str) -> int:
    """How often `text` appears in the member's own log (for waiting on a message it ignores)."""
    try:
        return (member.data_dir / "frostfed.log").read_text(errors="replace").count(text)
    except OSError:
        return 0

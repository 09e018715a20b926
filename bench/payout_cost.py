"""What one payout costs a signer, piece by piece, before and after the changes of issue 17, measured
in the same run (the "before" column runs the previous code paths, kept here in the bench):

1. one signer's check of a payout (the index refresh, `ChainChecks`, `AnchorPolicy`, `LedgerPolicy`,
   the BIP 341 sighashes) with 1 / 10 / 50 inputs against a regtest bitcoind: before, a new HTTP
   connection per RPC and one `gettxout` per input; after, one kept-alive connection and one batch;
2. the ledger's judgement of a payout with 1,000 outputs (`LedgerPolicy.check`) with 20 earlier
   payouts of those scripts on record: before, two queries per script and a scan of every reserved
   output without an index; after, one read of all scripts through the index;
3. a signer's `on_session` at 67-of-100 in a new signer set (as each ROAST session brings): before,
   every signer's pubnonces aggregated by the signer and the Lagrange coefficients with u inversions;
   after, the coordinator's aggregate nonces and one batch inversion;
4. the size of a session request (`ssess`) on the wire (canonical JSON) at 15 / 50 / 100 members;
5. the nonce journal's durable (synchronous=FULL) commits per session and their time.

    python bench/payout_cost.py
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path

from coincurve import PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from dealer import trusted_dealer

from frostfed.bitcoin.chain import BitcoindChainSource, BitcoindRpc, ChainSource, Utxo
from frostfed.bitcoin.chain_checks import ChainChecks, CheckedPayout, FeeBounds
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.ledger import DebtStatus, Ledger
from frostfed.bitcoin.payout import build_payout_tx
from frostfed.bitcoin.policy import LedgerPolicy, PayoutPolicy
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.taproot import p2tr_address, script_from_address
from frostfed.federation.chain_view import AnchorPolicy, ChainRefresh, ChainView
from frostfed.federation.coins import payout_coins
from frostfed.federation.config import default_threshold
from frostfed.federation.epoch_keys import RECEIVE, EpochKeys
from frostfed.federation.messages import encode, encode_nonces
from frostfed.federation.signing_request import SigningRequest, federation_scripts, signing_tasks
from frostfed.federation.store import EpochRecord, Store
from frostfed.frost import secp, signing
from frostfed.frost.roast import Presignature, RoastSigner, SessionRequest, SigningTask, ThresholdKey
from frostfed.frost.signer_sets import signer_sets


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# -- the previous code paths ---------------------------------------------------------------------


class PerCallRpc(BitcoindRpc):
    """The previous transport: a new HTTP connection for every call."""

    def _post(self, what: str, body: str) -> tuple[int, bytes]:
        try:
            return super()._post(what, body)
        finally:
            self.close()


class PerInputChainSource(BitcoindChainSource):
    """The previous chain source: one `gettxout` round trip per input."""

    def get_utxos(self, outpoints):  # type: ignore[no-untyped-def]
        return ChainSource.get_utxos(self, outpoints)


class PerScriptLedgerPolicy(LedgerPolicy):
    """The previous `LedgerPolicy.check`: `knows` and `status` per output script, each status a scan of
    the reserved outputs and a query per reservation (run on a copy of the ledger without the new
    indexes)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)

    def _status(self, script: bytes, replacing: Iterable[tuple[str, int]]) -> DebtStatus:
        spent = set(replacing)
        row = self.db.execute("SELECT credited FROM debt WHERE script = ?", (script,)).fetchone()
        if row is None:
            return DebtStatus(0, 0, 0)
        paid = self.db.execute("SELECT COALESCE(SUM(sats), 0) FROM payout WHERE script = ?", (script,)).fetchone()
        rows = self.db.execute(
            "SELECT o.txid, o.sats FROM reserved_output o JOIN reserved r ON r.txid = o.txid "
            "WHERE o.script = ? AND r.settled_by IS NULL",
            (script,),
        ).fetchall()
        reserved = 0
        for txid, sats in rows:
            inputs = self.db.execute("SELECT prev_txid, prev_vout FROM reserved_input WHERE txid = ?", (txid,))
            if not spent.intersection((t, v) for t, v in inputs):
                reserved += sats
        return DebtStatus(row[0], int(paid[0]), reserved)

    def check(self, payout: CheckedPayout) -> None:
        for script, sats in payout.payouts.items():
            if self.db.execute("SELECT 1 FROM debt WHERE script = ?", (script,)).fetchone() is None:
                raise PolicyRejection("unknown_output", script.hex())
            if sats > self._status(script, payout.outpoints).available:
                raise PolicyRejection("overpayment", script.hex())


def lagrange_one_inversion_each(ids):  # type: ignore[no-untyped-def]
    """The previous `_interpolating_values`: u^2 multiplications mod n and u inversions."""
    total = 1
    for i in ids:
        total = total * (i + 1) % secp.N
    out = {}
    for my_id in ids:
        deno = my_id + 1
        for i in ids:
            if i != my_id:
                deno = deno * (i - my_id) % secp.N
        out[my_id] = total * pow(deno, -1, secp.N) % secp.N
    return out


# -- 1. the signer's check -----------------------------------------------------------------------


def signer_check(tmp: Path) -> list[tuple[int, float, float]]:
    btc = RegtestBitcoind(tmp / "bitcoind")
    btc.start()
    try:
        btc.create_mining_wallet("miner")
        group_key = PrivateKey().public_key.format()
        chain_code = os.urandom(32)
        keys = EpochKeys(0, [group_key], 1, group_key, chain_code, [group_key], "regtest")
        store = Store(tmp / "member.sqlite")
        store.save_epoch(EpochRecord(0, "active", [group_key], 1, group_key, chain_code, [group_key], b"", b"x"))
        ledger = Ledger(tmp / "ledger.sqlite")
        cookie = btc.datadir / "regtest" / ".cookie"
        new_chain = BitcoindChainSource(BitcoindRpc("127.0.0.1", btc.rpc_port, cookie_file=cookie))
        old_chain = PerInputChainSource(PerCallRpc("127.0.0.1", btc.rpc_port, cookie_file=cookie))
        view = ChainView(ChainIndex(tmp / "chain.sqlite"), store, new_chain, ledger, "regtest")
        view.note_epoch_start(0, new_chain.tip_height())
        outputs = {p2tr_address(keys.output_key((RECEIVE, i)), "regtest"): Decimal("0.001") for i in range(50)}
        btc.rpc("sendmany", "", outputs, wallet="miner")
        btc.mine(1)
        miner = script_from_address(btc.rpc("getnewaddress", wallet="miner"), "regtest")
        ledger.credit(miner, 10_000)
        plan = payout_coins(view, new_chain, keys, 1)
        rows = []
        for k in (1, 10, 50):
            chosen = [plan.anchor, *plan.others[: k - 1]]
            change = keys.script(plan.change_path)
            tx = build_payout_tx([c.utxo for c in chosen], [(miner, 10_000)], change, 2)
            change_paths = {j: plan.change_path for j, o in enumerate(tx.vout) if bytes(o.scriptPubKey) == change}
            req = SigningRequest("bench", 0, "payout", tx, tuple(c.path for c in chosen), change_paths)

            def check(chain: ChainSource, req: SigningRequest = req) -> None:
                view.chain = chain
                checks = ChainChecks(chain, federation_scripts(keys, req), FeeBounds(1, 50))
                policy = PayoutPolicy(
                    checks,
                    [ChainRefresh(view), LedgerPolicy(ledger), AnchorPolicy(view, keys, req, refresh=False)],
                )
                signing_tasks(keys, req, policy.check(req.tx))

            check(new_chain)
            before = median_ms(lambda: check(old_chain), 21)
            after = median_ms(lambda: check(new_chain), 21)
            rows.append((k, before, after))
        return rows
    finally:
        btc.stop()


# -- 2. the ledger -------------------------------------------------------------------------------


def ledger_check(tmp: Path, outputs: int = 1_000, history: int = 20) -> tuple[float, float]:
    path = tmp / "ledger-1000.sqlite"
    ledger = Ledger(path)
    scripts = [b"\x00\x14" + hashlib.sha256(b"miner %d" % i).digest()[:20] for i in range(outputs)]
    for s in scripts:
        ledger.credit(s, 10_000_000)
    for h in range(history):  # earlier payouts, settled by the chain: their rows stay on record
        ledger.reserve(f"{h:064x}", [(f"{h + 1000:064x}", 0)], {s: 1_000 for s in scripts}, height=h)
    ledger._db.execute("UPDATE reserved SET settled_by = txid")
    ledger.reserve("ee" * 32, [("ff" * 32, 1)], {s: 500 for s in scripts}, height=history)  # one not yet confirmed
    utxo = Utxo("ab" * 32, 0, 10**8, b"\x51\x20" + bytes(32), 10, False)
    payout = CheckedPayout(
        tx=None, txid="cd" * 32, inputs=(utxo,), change_outputs=(), payouts={s: 700 for s in scripts}
    )  # type: ignore[arg-type]
    old_path = tmp / "ledger-old.sqlite"
    ledger._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(path, old_path)
    old_db = sqlite3.connect(old_path, isolation_level=None)
    for index in ("reserved_output_script", "reserved_output_txid", "reserved_input_txid"):
        old_db.execute(f"DROP INDEX {index}")
    old_db.close()
    old = PerScriptLedgerPolicy(old_path)
    new = LedgerPolicy(ledger)
    before = median_ms(lambda: old.check(payout), 5)
    after = median_ms(lambda: new.check(payout), 5)
    return before, after


# -- 3. the signer's session ---------------------------------------------------------------------


def signer_session(t: int = 67, n: int = 100, ntasks: int = 1, runs: int = 15) -> tuple[float, float]:
    keys = trusted_dealer(t, n, seed=5)
    key = ThresholdKey(n, t, keys.thresh_pk, tuple(keys.pubshares))
    tasks = [SigningTask(os.urandom(32)) for _ in range(ntasks)]
    signers = [RoastSigner(key, i, keys.secshares[i], tasks) for i in range(n)]
    pres = {i: s.presign() for i, s in enumerate(signers)}
    me = signers[0]

    def one(previous: bool, sid: int) -> float:
        # a new signer set each time, as each ROAST session brings: nothing of it is cached
        ids = (0, *sorted(random.Random(sid).sample(range(1, n), t - 1)))
        request = SessionRequest(sid, ids, tuple(pres[i].pubnonces for i in ids))
        signing._validated_signer_set.cache_clear()
        signing._nonce_agg_cached.cache_clear()
        signing._pubshare_point.cache_clear()
        signer_sets.cache_clear()
        me.sets = key.sets()
        if previous:
            signing._interpolating_values = lagrange_one_inversion_each  # type: ignore[assignment]
        try:
            t0 = time.perf_counter()
            reply = me.on_session(request if previous else request.signer_session())
            dt = (time.perf_counter() - t0) * 1000
        finally:
            signing._interpolating_values = new_lagrange  # type: ignore[assignment]
        pres[0] = Presignature(0, reply.next_pubnonces)
        return dt

    new_lagrange = signing._interpolating_values
    before = statistics.median(one(True, s) for s in range(runs))
    after = statistics.median(one(False, runs + s) for s in range(runs))
    return before, after


# -- 4. the session request on the wire ----------------------------------------------------------


def session_bytes(n: int, ntasks: int) -> tuple[int, int]:
    t = default_threshold(n)
    pub = [tuple(os.urandom(66) for _ in range(ntasks)) for _ in range(t)]
    agg = tuple(os.urandom(66) for _ in range(ntasks))
    base = {"id": "ab" * 32, "sid": 1, "signers": list(range(n - t, n))}
    before = encode("sign_session", {**base, "pubnonces": [[p.hex() for p in ps] for ps in pub]})
    after = encode("sign_session", {**base, "aggnonces": encode_nonces(agg)})
    return len(before), len(after)


# -- 5. the nonce journal ------------------------------------------------------------------------


def journal(tmp: Path, runs: int = 200) -> tuple[float, float]:
    store = Store(tmp / "journal.sqlite")
    keys = [os.urandom(66) for _ in range(2 * runs + 2)]
    store.issue_nonce(keys[0], "r")

    def before(k: int) -> None:
        store.use_nonce(keys[k])
        store.issue_nonce(keys[k + 1], "r")

    def after(k: int) -> None:
        store.use_nonce_and_issue(keys[k], keys[k + 1], "r")

    t0 = time.perf_counter()
    for k in range(runs):
        before(k)
    b = (time.perf_counter() - t0) * 1000 / runs
    t0 = time.perf_counter()
    for k in range(runs, 2 * runs):
        after(k)
    a = (time.perf_counter() - t0) * 1000 / runs
    store.close()
    return b, a


def main() -> None:
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)\n")
    with tempfile.TemporaryDirectory(prefix="frostfed-cost-") as name:
        tmp = Path(name)
        checks = signer_check(tmp)
        ledger_before, ledger_after = ledger_check(tmp)
        sessions = [(ntasks, *signer_session(ntasks=ntasks)) for ntasks in (1, 10)]
        journal_before, journal_after = journal(tmp)
    print(f"| {'what':58} | {'issue':>7} | {'before':>9} | {'after':>9} | {'ratio':>6} |")
    print(f"|{'-' * 60}|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 8}|")

    def row(what: str, issue: str, before: float, after: float, unit: str = "ms") -> None:
        fmt = (lambda v: f"{v:7.1f} {unit}") if unit == "ms" else (lambda v: f"{v:7.0f} {unit}")
        print(f"| {what:58} | {issue:>7} | {fmt(before):>9} | {fmt(after):>9} | {before / after:6.1f} |")

    issue = {1: "28", 10: "112", 50: "367"}
    for k, before, after in checks:
        row(f"signer check of a payout, {k} input(s)", issue[k], before, after)
    row("ledger check of a payout with 1,000 outputs", "677", ledger_before, ledger_after)
    for ntasks, before, after in sessions:
        row(f"on_session 67-of-100, new signer set, {ntasks} task(s)", "", before, after)
    row("nonce journal per session (commits: 2 before, 1 after)", "", journal_before, journal_after)
    for n in (15, 50, 100):
        for ntasks in (1, 10):
            before, after = session_bytes(n, ntasks)
            row(f"ssess message, {default_threshold(n)}-of-{n}, {ntasks} task(s)", "", before, after, "B")


if __name__ == "__main__":
    main()

"""The member's ledger of debts: credits, reservations, confirmation depth, persistence."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest
from chain_tracking import index_over
from coincurve import PrivateKey

from frostfed.bitcoin.chain_checks import ChainChecks
from frostfed.bitcoin.ledger import Ledger, LedgerError
from frostfed.bitcoin.payout import build_payout_tx, sign_payout
from frostfed.bitcoin.policy import LedgerPolicy, PayoutPolicy
from frostfed.bitcoin.taproot import bip86_output_key, p2tr_address, p2tr_script, taproot_tweak_seckey

MINER_A = b"\x00\x14" + b"\xaa" * 20
MINER_B = b"\x00\x14" + b"\xbb" * 20


def test_credits_add_up_and_survive_a_restart(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    assert not ledger.knows(MINER_A)
    ledger.credit(MINER_A, 1_000)
    ledger.credit(MINER_A, 2_500)
    ledger.reserve("ab" * 32, [("cd" * 32, 1)], {MINER_A: 3_000}, height=10)
    ledger.reserve("ab" * 32, [("cd" * 32, 1)], {MINER_A: 3_000}, height=10)  # the same again: no-op
    ledger.close()

    reopened = Ledger(path)
    assert reopened.knows(MINER_A) and not reopened.knows(MINER_B)
    status = reopened.status(MINER_A)
    assert (status.credited, status.paid, status.reserved, status.available) == (3_500, 0, 3_000, 500)
    # A request spending the reserved payout's input replaces it, so that reservation does not count.
    assert reopened.status(MINER_A, replacing=[("cd" * 32, 1)]).available == 3_500
    assert reopened.reserved_txids() == ["ab" * 32]


def test_concurrent_credits_are_not_lost(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")

    def credit():
        for _ in range(50):
            ledger.credit(MINER_B, 3)

    threads = [threading.Thread(target=credit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.status(MINER_B).credited == 6 * 50 * 3


def test_bad_updates_are_refused(tmp_path):
    ledger = Ledger(":memory:")
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(LedgerError):
            ledger.credit(MINER_A, bad)


def test_what_the_chain_paid_is_paid_and_a_reorganisation_takes_it_back(regtest, chain, tmp_path):
    sk = os.urandom(32)
    script = p2tr_script(bip86_output_key(PrivateKey(sk).public_key.format()[1:]))
    index = index_over(chain, [script], chain.tip_height() + 1)
    txid, vout = regtest.send_to(p2tr_address(script[2:], "regtest"), 5_000_000)
    utxo = chain.get_utxo(txid, vout)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    index.sync(chain)
    assert ledger.reconcile(index) == []  # nothing spent yet
    ledger.credit(MINER_A, 1_000_000)
    policy = PayoutPolicy(ChainChecks(chain, {script}), [LedgerPolicy(ledger)])
    tx = build_payout_tx([utxo], [(MINER_A, 1_000_000)], script, 2)
    signed, payout = sign_payout(tx, policy, lambda i, h, u: PrivateKey(taproot_tweak_seckey(sk)).sign_schnorr(h))
    chain.broadcast(signed)
    index.sync(chain)
    assert ledger.reconcile(index) == []  # in the mempool only: reserved, not paid
    assert ledger.status(MINER_A).reserved == 1_000_000
    block = regtest.mine(1)[0]
    index.sync(chain)
    assert ledger.reconcile(index) == [payout.txid]
    assert ledger.reconcile(index) == []  # counted once
    status = ledger.status(MINER_A)
    assert (status.paid, status.reserved, status.available) == (1_000_000, 0, 0)
    ((paid_txid, height, paid_script, sats),) = ledger.payouts()
    assert (paid_txid, paid_script, sats) == (payout.txid, MINER_A, 1_000_000)
    assert height == chain.tip_height()

    regtest.rpc("invalidateblock", block)  # a reorganisation: the payout leaves the chain
    try:
        index.sync(chain)
        ledger.reconcile(index)
        status = ledger.status(MINER_A)
        assert (status.paid, status.reserved) == (0, 1_000_000)  # it may confirm again: reserved again
        assert ledger.payouts() == []
    finally:
        regtest.rpc("reconsiderblock", block)
    index.sync(chain)
    assert ledger.reconcile(index) == [payout.txid]
    assert ledger.status(MINER_A).paid == 1_000_000


def test_all_outputs_of_a_payout_are_read_at_once_through_the_script_index(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    scripts = [b"\x00\x14" + i.to_bytes(20, "big") for i in range(1_200)]  # more than one IN list holds
    for s in scripts:
        ledger.credit(s, 1_000)
    x, y = ("cd" * 32, 0), ("ef" * 32, 3)
    ledger.reserve("01" * 32, [x], {s: 100 for s in scripts[:600]}, height=5)
    ledger.reserve("02" * 32, [y], {s: 7 for s in scripts[300:]}, height=5)
    unknown = b"\x00\x14" + b"\xff" * 20
    both = ledger.statuses([*scripts, unknown])
    assert unknown not in both and len(both) == len(scripts)
    assert [both[s].reserved for s in (scripts[0], scripts[300], scripts[599], scripts[600], scripts[-1])] == [
        100,
        107,
        107,
        7,
        7,
    ]
    for s in (scripts[0], scripts[300], scripts[-1]):  # one script: through the script index, same answer
        assert ledger.status(s) == both[s]
    replaced = ledger.statuses(scripts, replacing=[x])  # a fee bump of the first payout
    assert [replaced[s].reserved for s in (scripts[0], scripts[300], scripts[-1])] == [0, 7, 7]
    assert all(d.credited == 1_000 and d.paid == 0 for d in replaced.values())
    assert ledger.status(scripts[300], replacing=[x, y]).available == 1_000
    assert ledger.status(unknown) == ledger.status(unknown, replacing=[x])
    assert ledger.status(unknown).credited == 0
    plan = " ".join(
        str(r)
        for r in ledger._db.execute(
            "EXPLAIN QUERY PLAN SELECT o.txid FROM reserved_output o WHERE o.script IN (?, ?)", scripts[:2]
        )
    )
    assert "reserved_output_script" in plan, plan


def test_a_ledger_made_before_the_script_index_gets_it(tmp_path):
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX reserved_output_script")
    db.commit()
    db.close()
    ledger = Ledger(path)
    names = {r[0] for r in ledger._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"reserved_output_script", "reserved_input_txid"} <= names

"""The member's ledger of debts: credits, reservations, confirmation depth, persistence."""

from __future__ import annotations

import os
import threading

import pytest
from coincurve import PrivateKey

from frostfed.bitcoin.ledger import Ledger, LedgerError
from frostfed.bitcoin.payout import build_payout_tx, sign_payout
from frostfed.bitcoin.policy import ChainChecks, LedgerPolicy, PayoutPolicy
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
    with pytest.raises(LedgerError, match="in a block"):
        ledger.reconcile(None, min_confirmations=0)


def test_payout_counts_as_paid_only_at_the_required_depth(regtest, chain, tmp_path):
    sk = os.urandom(32)
    script = p2tr_script(bip86_output_key(PrivateKey(sk).public_key.format()[1:]))
    txid, vout = regtest.send_to(p2tr_address(script[2:], "regtest"), 5_000_000)
    utxo = chain.get_utxo(txid, vout)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.reconcile(chain) == []  # nothing reserved: nothing to scan
    ledger.credit(MINER_A, 1_000_000)
    policy = PayoutPolicy(ChainChecks(chain, {script}), [LedgerPolicy(ledger)])
    tx = build_payout_tx([utxo], [(MINER_A, 1_000_000)], script, 2)
    signed, payout = sign_payout(tx, policy, lambda i, h, u: PrivateKey(taproot_tweak_seckey(sk)).sign_schnorr(h))
    chain.broadcast(signed)
    regtest.mine(1)
    assert ledger.reconcile(chain, min_confirmations=2) == []
    assert ledger.status(MINER_A).reserved == 1_000_000
    regtest.mine(1)
    assert ledger.reconcile(chain, min_confirmations=2) == [payout.txid]
    assert ledger.reconcile(chain, min_confirmations=2) == []  # counted once
    status = ledger.status(MINER_A)
    assert (status.paid, status.reserved, status.available) == (1_000_000, 0, 0)
    ((paid_txid, height, paid_script, sats),) = ledger.payouts()
    assert (paid_txid, paid_script, sats) == (payout.txid, MINER_A, 1_000_000)
    assert height == chain.tip_height() - 1

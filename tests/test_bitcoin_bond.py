"""Fidelity bond outputs on a real regtest bitcoind: spendable by the owner after the lock time only."""

from decimal import Decimal

import pytest
from coincurve import PrivateKey

from frostfed.bitcoin.bond import BondError, bond_script, claim_bond
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.bitcoin.taproot import address_from_script, script_from_address

pytestmark = pytest.mark.slow


def test_bond_spendable_by_its_owner_after_the_lock_time_only(regtest: RegtestBitcoind) -> None:
    owner = PrivateKey()
    locktime = regtest.rpc("getblockcount") + 10
    script = bond_script(owner.public_key.format()[1:], locktime)
    txid, vout = regtest.send_to(address_from_script(script, "regtest"), 500_000)
    dest = script_from_address(regtest.rpc("getnewaddress", wallet="miner"), "regtest")

    early = claim_bond((txid, vout), 500_000, owner, locktime, dest, 1_000)
    verdict = regtest.rpc("testmempoolaccept", [early.serialize().hex()])[0]
    assert not verdict["allowed"] and "non-final" in verdict["reject-reason"]

    thief = claim_bond((txid, vout), 500_000, PrivateKey(), locktime, dest, 1_000)
    regtest.mine(10)
    verdict = regtest.rpc("testmempoolaccept", [thief.serialize().hex()])[0]
    assert not verdict["allowed"]

    late = claim_bond((txid, vout), 500_000, owner, locktime, dest, 1_000)
    assert regtest.rpc("sendrawtransaction", late.serialize().hex()) == late.GetTxid()[::-1].hex()
    regtest.mine(1)
    assert regtest.rpc("gettxout", txid, vout) is None
    received = regtest.rpc("getreceivedbyaddress", address_from_script(dest, "regtest"), 1, wallet="miner")
    assert received == Decimal("0.00499")


def test_bond_parameters_are_checked() -> None:
    with pytest.raises(BondError):
        bond_script(bytes(31), 100)
    with pytest.raises(BondError):
        bond_script(bytes(32), 600_000_000)
    with pytest.raises(BondError):
        claim_bond(("00" * 32, 0), 1_000, PrivateKey(), 100, b"\x51\x20" + bytes(32), 2_000)

"""The joiner's wallet on a real regtest bitcoind: standalone (a bitcoind wallet) and inside Core
Lightning (the node wallet of the lightningd stand-in, through fundpsbt / signpsbt / unreserveinputs).
Each offers a coin, signs a join transaction that bitcoind accepts, refuses one that shortchanges the
joiner (and gives its coin back), and releases its coin when the change fails."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness, lx
from bitcoin.core.script import CScript, CScriptWitness
from clnsim import CliError, SimNetwork, SimNode

from frostfed.bitcoin.bond import bond_script
from frostfed.bitcoin.cln_chain import LightningSocket
from frostfed.bitcoin.regtest import RegtestBitcoind
from frostfed.federation.bond_wallet import (
    FEE_MARGIN_SATS,
    BitcoindBondWallet,
    BondWalletError,
    ClnBondWallet,
    WalletCoin,
)

CAP = Path(__file__).parent / "plugins" / "cap_plugin.py"
BOND = 60_000
BOND_OUT = CTxOut(
    BOND, CScript(bond_script(bytes.fromhex("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"), 500))
)
_names = itertools.count()


def join_tx(
    coin: WalletCoin, fee: int = 300, bond: CTxOut = BOND_OUT, extra: tuple[str, int] | None = None
) -> CTransaction:
    """The joiner's part of a transition: its coin in, the bond and its change out (plus, if given, a
    federation input ahead of it)."""
    vin = []
    if extra is not None:
        vin.append(CTxIn(COutPoint(lx(extra[0]), extra[1]), nSequence=0xFFFFFFFD))
    vin.append(CTxIn(COutPoint(lx(coin.outpoint[0]), coin.outpoint[1]), nSequence=0xFFFFFFFD))
    vout = [bond, CTxOut(coin.amount - bond.nValue - fee, CScript(coin.change_script))]
    return CTransaction(vin, vout, 0, 2)


def with_witness(tx: CTransaction, index: int, script_sig: bytes, witness: list[bytes]) -> CTransaction:
    vin = [
        CTxIn(i.prevout, CScript(script_sig) if n == index else i.scriptSig, i.nSequence) for n, i in enumerate(tx.vin)
    ]
    wit = [CTxInWitness(CScriptWitness(witness if n == index else [])) for n in range(len(tx.vin))]
    return CTransaction(vin, tx.vout, tx.nLockTime, tx.nVersion, CTxWitness(wit))


def accepted(regtest: RegtestBitcoind, tx: CTransaction) -> dict:
    return regtest.rpc("testmempoolaccept", [tx.serialize().hex()])[0]


def bitcoind_wallet(regtest: RegtestBitcoind, coins: int = 1) -> tuple[BitcoindBondWallet, str]:
    name = f"bondwallet{next(_names)}"
    regtest.rpc("createwallet", name)
    for _ in range(coins):
        regtest.rpc("sendtoaddress", regtest.rpc("getnewaddress", wallet=name), Decimal("0.01"), wallet="miner")
    regtest.mine(1)
    return BitcoindBondWallet(regtest.rpc_client.for_wallet(name)), name


def federation_coin(regtest: RegtestBitcoind) -> tuple[tuple[str, int], CTxOut]:
    """Some other coin in the join transaction (the federation's, in a real transition)."""
    address = regtest.rpc("getnewaddress", "", "bech32m", wallet="miner")
    outpoint = regtest.send_to(address, 30_000)
    out = regtest.rpc("gettxout", outpoint[0], outpoint[1])
    return outpoint, CTxOut(30_000, CScript(bytes.fromhex(out["scriptPubKey"]["hex"])))


# --- bitcoind -----------------------------------------------------------------------------------------------


def test_bitcoind_wallet_signs_a_join_that_bitcoind_accepts(regtest):
    wallet, name = bitcoind_wallet(regtest)
    coin = wallet.offer(BOND, "regtest")
    assert coin.amount == 1_000_000
    locked = regtest.rpc("listlockunspent", wallet=name)
    assert [(u["txid"], u["vout"]) for u in locked] == [coin.outpoint]
    tx = join_tx(coin)
    script_sig, witness = wallet.sign(tx, {}, coin.outpoint, BOND_OUT)
    result = accepted(regtest, with_witness(tx, 0, script_sig, witness))
    assert result["allowed"], result


def test_bitcoind_wallet_signs_its_input_among_others(regtest):
    wallet, _ = bitcoind_wallet(regtest)
    coin = wallet.offer(BOND, "regtest")
    fed_outpoint, fed_out = federation_coin(regtest)
    tx = join_tx(coin, extra=fed_outpoint)
    script_sig, witness = wallet.sign(tx, {fed_outpoint: fed_out}, coin.outpoint, BOND_OUT)
    assert witness or script_sig  # verified against the sighash inside sign()
    coin = wallet.offer(BOND, "regtest")
    with pytest.raises(BondWalletError, match="whose output was not given"):
        wallet.sign(join_tx(coin, extra=fed_outpoint), {}, coin.outpoint, BOND_OUT)


@pytest.mark.parametrize(
    "tx_of, why",
    [
        (lambda c: join_tx(c, bond=CTxOut(BOND - 1, BOND_OUT.scriptPubKey)), "agreed bond"),
        (lambda c: join_tx(c, bond=CTxOut(BOND, CScript(b"\x51\x20" + b"\x01" * 32))), "agreed bond"),
        (lambda c: join_tx(c, fee=FEE_MARGIN_SATS + 1), "as fee"),
        (lambda c: CTransaction([], [BOND_OUT], 0, 2), "exactly once"),
    ],
    ids=["bond-short", "bond-elsewhere", "change-short", "coin-not-spent"],
)
def test_bitcoind_wallet_refuses_a_bad_join_and_unlocks_its_coin(regtest, tx_of, why):
    wallet, name = bitcoind_wallet(regtest)
    coin = wallet.offer(BOND, "regtest")
    with pytest.raises(BondWalletError, match=why):
        wallet.sign(tx_of(coin), {}, coin.outpoint, BOND_OUT)
    assert regtest.rpc("listlockunspent", wallet=name) == []
    assert wallet.coin is None


def test_bitcoind_wallet_without_a_big_enough_coin(regtest):
    wallet, _ = bitcoind_wallet(regtest)
    with pytest.raises(BondWalletError, match="no confirmed coin"):
        wallet.offer(1_000_000, "regtest")


def test_bitcoind_wallet_release_unlocks_and_the_coin_is_offered_again(regtest):
    wallet, name = bitcoind_wallet(regtest)
    first = wallet.offer(BOND, "regtest")
    wallet.release()
    assert regtest.rpc("listlockunspent", wallet=name) == []
    with pytest.raises(BondWalletError, match="no such coin"):
        wallet.sign(join_tx(first), {}, first.outpoint, BOND_OUT)
    assert wallet.offer(BOND, "regtest").outpoint == first.outpoint


# --- Core Lightning (the stand-in's node wallet) ---------------------------------------------------------


@pytest.fixture
async def node(regtest) -> AsyncIterator[SimNode]:
    net = SimNetwork(bitcoind=regtest.rpc_client, seed=71)
    try:
        yield await net.add_node(CAP)
    finally:
        await net.close()


async def fund_node(regtest: RegtestBitcoind, node: SimNode, sats: int = 1_000_000, kind: str = "p2tr") -> None:
    address = (await node.cli("newaddr", kind))[kind]
    regtest.rpc("sendtoaddress", address, Decimal(sats) / Decimal(100_000_000), wallet="miner")
    regtest.mine(1)


async def reserved(node: SimNode) -> dict[tuple[str, int], bool]:
    funds = await node.cli("listfunds")
    return {(o["txid"], o["output"]): o["reserved"] for o in funds["outputs"]}


@pytest.mark.parametrize("kind", ["p2tr", "bech32"])
async def test_node_wallet_signs_a_join_that_bitcoind_accepts(regtest, node, kind):
    await fund_node(regtest, node, kind=kind)
    wallet = ClnBondWallet(LightningSocket(node.rpc_path))
    coin = await asyncio.to_thread(wallet.offer, BOND, "regtest")
    assert coin.amount == 1_000_000
    assert (await reserved(node))[coin.outpoint] is True
    fed_outpoint, fed_out = federation_coin(regtest)
    tx = join_tx(coin, extra=fed_outpoint)
    script_sig, witness = await asyncio.to_thread(wallet.sign, tx, {fed_outpoint: fed_out}, coin.outpoint, BOND_OUT)
    assert script_sig == b"" and len(witness) == (1 if kind == "p2tr" else 2)
    alone = join_tx(coin)
    script_sig, witness = await asyncio.to_thread(wallet.sign, alone, {}, coin.outpoint, BOND_OUT)
    result = accepted(regtest, with_witness(alone, 0, script_sig, witness))
    assert result["allowed"], result
    # the change goes back to the node's own wallet
    regtest.rpc("sendrawtransaction", with_witness(alone, 0, script_sig, witness).serialize().hex())
    regtest.mine(1)
    funds = await node.cli("listfunds")
    assert [o["amount_msat"] for o in funds["outputs"]] == [(coin.amount - BOND - 300) * 1000]


async def test_node_wallet_refuses_a_short_bond_and_unreserves(regtest, node):
    await fund_node(regtest, node)
    wallet = ClnBondWallet(LightningSocket(node.rpc_path))
    coin = await asyncio.to_thread(wallet.offer, BOND, "regtest")
    bad = join_tx(coin, bond=CTxOut(BOND - 1000, BOND_OUT.scriptPubKey))
    with pytest.raises(BondWalletError, match="agreed bond"):
        await asyncio.to_thread(wallet.sign, bad, {}, coin.outpoint, BOND_OUT)
    assert (await reserved(node))[coin.outpoint] is False
    assert not any(req["method"] == "signpsbt" for req, _ in node.rpc_log)


async def test_node_wallet_release_unreserves(regtest, node):
    await fund_node(regtest, node)
    wallet = ClnBondWallet(LightningSocket(node.rpc_path))
    coin = await asyncio.to_thread(wallet.offer, BOND, "regtest")
    await asyncio.to_thread(wallet.release)
    assert (await reserved(node))[coin.outpoint] is False
    again = await asyncio.to_thread(wallet.offer, BOND, "regtest")
    assert again.outpoint == coin.outpoint


async def test_node_wallet_without_a_big_enough_coin(regtest, node):
    await fund_node(regtest, node, sats=50_000)
    wallet = ClnBondWallet(LightningSocket(node.rpc_path))
    with pytest.raises(BondWalletError, match="Could not afford"):
        await asyncio.to_thread(wallet.offer, BOND, "regtest")
    assert set((await reserved(node)).values()) == {False}


async def test_node_wallet_with_only_small_coins_gives_them_back(regtest, node):
    for _ in range(3):
        await fund_node(regtest, node, sats=40_000)
    wallet = ClnBondWallet(LightningSocket(node.rpc_path))
    with pytest.raises(BondWalletError, match="no single confirmed coin"):
        await asyncio.to_thread(wallet.offer, BOND, "regtest")
    assert set((await reserved(node)).values()) == {False}


# --- the stand-in's wallet calls, as lightningd answers them ---------------------------------------------


async def test_fundpsbt_signpsbt_unreserveinputs_shapes(regtest, node):
    await fund_node(regtest, node)
    funded = await node.cli(
        "fundpsbt", satoshi=100_000, feerate="253perkw", startweight=214, reserve=6, excess_as_change=True
    )
    assert set(funded) == {
        "psbt",
        "feerate_per_kw",
        "estimated_final_weight",
        "excess_msat",
        "change_outnum",
        "reservations",
    }
    assert funded["excess_msat"] == 0 and funded["feerate_per_kw"] == 253
    [res] = funded["reservations"]
    height = regtest.rpc("getblockcount")
    assert res["reserved"] and not res["was_reserved"] and res["reserved_to_block"] == height + 6
    with pytest.raises(CliError) as e:
        await node.cli("fundpsbt", satoshi=100_000, feerate="253perkw", startweight=214)
    assert e.value.code == 301  # the only coin is reserved
    with pytest.raises(CliError) as e:
        await node.cli("signpsbt", psbt=funded["psbt"], signonly=[5])
    assert e.value.code == -32602 and "out of range" in e.value.message
    signed = await node.cli("signpsbt", psbt=funded["psbt"])
    assert set(signed) == {"signed_psbt"} and signed["signed_psbt"] != funded["psbt"]
    un = await node.cli("unreserveinputs", funded["psbt"], 6)
    assert un == {"reservations": [{"txid": res["txid"], "vout": res["vout"], "was_reserved": True, "reserved": False}]}
    with pytest.raises(CliError) as e:
        await node.cli("signpsbt", psbt=funded["psbt"])
    assert e.value.code == -1 and "is not reserved" in e.value.message
    with pytest.raises(CliError) as e:
        await node.cli("fundpsbt", satoshi="lots", feerate="253perkw", startweight=214)
    assert e.value.code == -32602

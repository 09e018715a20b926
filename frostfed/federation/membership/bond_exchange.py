"""The joiner's side of a join: it offers a coin of its own wallet for its fidelity bond, and later signs
that coin's input of the join transaction, but only if the transaction pays its bond."""

from __future__ import annotations

from typing import Any

from bitcoin.core import CTransaction, CTxOut, b2lx
from bitcoin.core.script import CScript
from coincurve import PrivateKey

from frostfed.bitcoin.bond import bond_script
from frostfed.federation.bond_wallet import BondWallet
from frostfed.federation.messages import BondSign
from frostfed.federation.transition import BondOffer, Proposal


class BondRefused(Exception):
    """The joiner will not offer or sign; the message says why."""


def make_offer(wallet: BondWallet | None, bond_key: PrivateKey | None, p: Proposal, network: str) -> BondOffer:
    if wallet is None or bond_key is None:
        raise BondRefused("this node has no wallet to pay a bond from")
    coin = wallet.offer(p.bond_sats, network)
    return BondOffer(coin.outpoint, coin.amount, bond_key.public_key.format()[1:], coin.change_script)


def sign_bond_input(
    wallet: BondWallet | None, bond_key: PrivateKey | None, p: Proposal, ask: BondSign
) -> tuple[bytes, list[bytes], dict[str, Any]]:
    """The joiner signs only a transaction that spends its offered coin into its bond (with the agreed
    lock time) and its change (the wallet checks both), and nothing of its own elsewhere. Returns the
    input's (scriptSig, witness) and the bond output's record."""
    coin = wallet.coin if wallet is not None else None
    if wallet is None or bond_key is None or coin is None:
        raise BondRefused("no bond was offered")
    tx = CTransaction.deserialize(ask.tx)
    bond = CTxOut(p.bond_sats, CScript(bond_script(bond_key.public_key.format()[1:], p.bond_locktime)))
    prevouts = {(po.txid, po.vout): CTxOut(po.amount, CScript(po.script_pubkey)) for po in ask.prevouts}
    script_sig, witness = wallet.sign(tx, prevouts, coin.outpoint, bond)
    vout = next(i for i, o in enumerate(tx.vout) if o.scriptPubKey == bond.scriptPubKey)
    record = {"txid": b2lx(tx.GetTxid()), "vout": vout, "sats": p.bond_sats, "locktime": p.bond_locktime}
    return script_sig, witness, record

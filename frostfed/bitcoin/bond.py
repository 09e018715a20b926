"""The fidelity bond a joining member locks when the federation admits it.

A Taproot output with an unspendable internal key (BIP 341's NUMS point) and one script leaf,
`<locktime> OP_CHECKLOCKTIMEVERIFY OP_DROP <owner key> OP_CHECKSIG`: only the joiner can spend it,
and only once the chain has reached `locktime` (a block height), as in JoinMarket's fidelity bonds.
"""

from __future__ import annotations

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness, lx
from bitcoin.core.script import OP_CHECKLOCKTIMEVERIFY, OP_CHECKSIG, OP_DROP, CScript, CScriptWitness
from coincurve import PrivateKey

from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, taproot_sighash
from frostfed.bitcoin.taproot import TapLeaf, control_block, p2tr_script, tapleaf_hash, taproot_output_key

NUMS_KEY = bytes.fromhex("50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0")
"""BIP 341's point with no known discrete logarithm: the key path of a bond cannot be used."""

MAX_HEIGHT_LOCKTIME = 500_000_000


class BondError(ValueError):
    pass


def bond_leaf(owner_xonly: bytes, locktime: int) -> TapLeaf:
    if len(owner_xonly) != 32:
        raise BondError("the bond owner key is 32 bytes (x-only)")
    if not 0 < locktime < MAX_HEIGHT_LOCKTIME:
        raise BondError("the bond lock time is a block height")
    return TapLeaf(bytes(CScript([locktime, OP_CHECKLOCKTIMEVERIFY, OP_DROP, owner_xonly, OP_CHECKSIG])))


def bond_script(owner_xonly: bytes, locktime: int) -> bytes:
    leaf = bond_leaf(owner_xonly, locktime)
    output_key, _ = taproot_output_key(NUMS_KEY, tapleaf_hash(leaf))
    return p2tr_script(output_key)


def claim_bond(
    outpoint: tuple[str, int], amount: int, owner: PrivateKey, locktime: int, dest_script: bytes, fee: int
) -> CTransaction:
    """The transaction that sends a matured bond to `dest_script` (nLockTime = the bond's lock time)."""
    owner_xonly = owner.public_key.format()[1:]
    leaf = bond_leaf(owner_xonly, locktime)
    if amount - fee <= 0:
        raise BondError("the fee exceeds the bond")
    txin = CTxIn(COutPoint(lx(outpoint[0]), outpoint[1]), nSequence=0xFFFFFFFE)
    unsigned = CTransaction([txin], [CTxOut(amount - fee, CScript(dest_script))], locktime, 2)
    spent = [CTxOut(amount, CScript(bond_script(owner_xonly, locktime)))]
    sighash = taproot_sighash(unsigned, 0, spent, SIGHASH_DEFAULT, leaf_hash=tapleaf_hash(leaf))
    sig = owner.sign_schnorr(sighash)
    witness = CScriptWitness([sig, leaf.script, control_block(NUMS_KEY, leaf, 0)])
    return CTransaction(unsigned.vin, unsigned.vout, locktime, 2, CTxWitness([CTxInWitness(witness)]))

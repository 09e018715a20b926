"""Building a payout transaction, and the one road to signing it: policy first, then signatures.

`sign_payout` never calls the signer before `PayoutPolicy.approve` has accepted the transaction, and it
computes every sighash from the chain's amounts and scripts. The signer is a callback so the same road
serves a single key in tests and BIP 445 threshold signing in the federation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, lx
from bitcoin.core.script import CScript

from frostfed.bitcoin.chain import Utxo
from frostfed.bitcoin.chain_checks import CheckedPayout
from frostfed.bitcoin.policy import PayoutPolicy
from frostfed.bitcoin.psbt import Psbt
from frostfed.bitcoin.psbt_claims import check_psbt_claims
from frostfed.bitcoin.sighash import (
    SIGHASH_DEFAULT,
    keypath_witness_stack,
    taproot_sighash,
    with_keypath_witnesses,
)
from frostfed.bitcoin.standardness import dust_limit, keypath_vsize

InputSigner = Callable[[int, bytes, Utxo], bytes]
"""(input index, BIP 341 sighash, the chain's view of the spent output) -> 64-byte BIP 340 signature."""

RBF_SEQUENCE = 0xFFFFFFFD


class PayoutBuildError(ValueError):
    pass


def build_payout_tx(
    inputs: Sequence[Utxo],
    payouts: Sequence[tuple[bytes, int]],
    change_script: bytes,
    fee_rate: float,
    locktime: int = 0,
) -> CTransaction:
    """Spend `inputs` to `payouts` (script, sats) and send the rest, less the fee, to `change_script`.

    The change output is left out when it would be dust (its value then goes to the fee).
    """
    if not inputs:
        raise PayoutBuildError("no inputs to spend")
    for script, sats in payouts:
        if sats < dust_limit(script):
            raise PayoutBuildError(f"a payout of {sats} sats is below the dust limit of {dust_limit(script)} sats")
    vin = [CTxIn(COutPoint(lx(u.txid), u.vout), nSequence=RBF_SEQUENCE) for u in inputs]
    vout = [CTxOut(sats, CScript(script)) for script, sats in payouts]
    total_in = sum(u.amount_sats for u in inputs)
    total_out = sum(sats for _, sats in payouts)
    with_change = CTransaction(vin, [*vout, CTxOut(0, CScript(change_script))], locktime, 2)
    fee = -(-int(keypath_vsize(with_change) * fee_rate * 1000) // 1000)
    change = total_in - total_out - fee
    if change >= dust_limit(change_script):
        return CTransaction(vin, [*vout, CTxOut(change, CScript(change_script))], locktime, 2)
    without = CTransaction(vin, vout, locktime, 2)
    if total_in - total_out < keypath_vsize(without) * fee_rate:
        raise PayoutBuildError(f"inputs hold {total_in} sats, not enough for {total_out} sats of payouts and the fee")
    return without


def sign_payout(tx: CTransaction, policy: PayoutPolicy, sign_input: InputSigner) -> tuple[CTransaction, CheckedPayout]:
    """Approve `tx` with the policy, then sign every input by key path (SIGHASH_DEFAULT).

    Raises PolicyRejection or ChainError before any signature is asked for.
    """
    payout = policy.approve(tx)
    spent = payout.spent_outputs
    stacks = {}
    for i, utxo in enumerate(payout.inputs):
        sighash = taproot_sighash(tx, i, spent, SIGHASH_DEFAULT)
        stacks[i] = keypath_witness_stack(sign_input(i, sighash, utxo), SIGHASH_DEFAULT)
    return with_keypath_witnesses(tx, stacks), payout


def sign_payout_psbt(psbt: Psbt, policy: PayoutPolicy, sign_input: InputSigner) -> tuple[Psbt, CheckedPayout]:
    """`sign_payout` for a PSBT: its witness UTXOs must match the chain and it may ask only for
    SIGHASH_DEFAULT or ALL (`check_psbt_claims`, run inside the approval); each input's Taproot key
    signature field is filled (finalize with `Psbt.finalize_keypath` or bitcoind's `finalizepsbt`)."""
    payout = policy.approve(psbt.tx, also_check=lambda p: check_psbt_claims(psbt, p))
    spent = payout.spent_outputs
    for i, utxo in enumerate(payout.inputs):
        hash_type = psbt.inputs[i].sighash_type or SIGHASH_DEFAULT
        sighash = taproot_sighash(psbt.tx, i, spent, hash_type)
        psbt.inputs[i].tap_key_sig = keypath_witness_stack(sign_input(i, sighash, utxo), hash_type)[0]
    return psbt, payout

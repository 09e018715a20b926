"""A PSBT's claims about the outputs it spends, checked against the chain.

Kept beside the chain checks rather than in `psbt` (which follows BIP 174/371 only): a wallet that
trusts a lying `witness_utxo` misjudges amounts, so what a PSBT says must be what the chain says.
"""

from __future__ import annotations

from bitcoin.core import CTransaction, b2lx

from frostfed.bitcoin.chain_checks import CheckedPayout
from frostfed.bitcoin.psbt import PSBT_IN_NON_WITNESS_UTXO, Psbt, PsbtError
from frostfed.bitcoin.rejection import PolicyRejection

SIGHASH_DEFAULT = 0x00
SIGHASH_ALL = 0x01


def check_psbt_claims(psbt: Psbt, payout: CheckedPayout) -> None:
    """What a PSBT says about the outputs it spends must be what the chain says, and it may ask only
    for SIGHASH_DEFAULT or SIGHASH_ALL: a wallet that trusts a lying `witness_utxo` misjudges the
    amounts, and any other sighash type leaves parts of the transaction open to change."""
    if psbt.tx.serialize() != payout.tx.serialize():
        raise PolicyRejection("psbt_mismatch", "the PSBT's unsigned transaction is not the transaction to sign")
    if len(psbt.inputs) != len(payout.inputs):
        raise PolicyRejection("psbt_mismatch", "the PSBT has a different number of inputs than its transaction")
    for i, (m, utxo) in enumerate(zip(psbt.inputs, payout.inputs, strict=True)):
        try:
            claimed = m.witness_utxo
            hash_type = m.sighash_type
        except PsbtError as e:
            raise PolicyRejection("psbt_malformed", f"input {i}: {e}") from None
        if claimed is not None and (
            claimed.nValue != utxo.amount_sats or bytes(claimed.scriptPubKey) != utxo.script_pubkey
        ):
            raise PolicyRejection(
                "psbt_utxo_mismatch",
                f"input {i}: the PSBT claims {claimed.nValue} sats to "
                f"{bytes(claimed.scriptPubKey).hex()}, the chain says {utxo.amount_sats} sats to "
                f"{utxo.script_pubkey.hex()}",
            )
        raw_prev = m.get(PSBT_IN_NON_WITNESS_UTXO)
        if raw_prev is not None:
            try:
                prev = CTransaction.deserialize(raw_prev)
            except Exception:
                raise PolicyRejection("psbt_malformed", f"input {i}: the non-witness UTXO does not parse") from None
            out = prev.vout[utxo.vout] if utxo.vout < len(prev.vout) else None
            if (
                b2lx(prev.GetTxid()) != utxo.txid
                or out is None
                or out.nValue != utxo.amount_sats
                or bytes(out.scriptPubKey) != utxo.script_pubkey
            ):
                raise PolicyRejection(
                    "psbt_utxo_mismatch",
                    f"input {i}: the PSBT's non-witness UTXO is not the transaction {utxo.txid} the input spends",
                )
        if hash_type not in (None, SIGHASH_DEFAULT, SIGHASH_ALL):
            raise PolicyRejection(
                "unsupported_sighash",
                f"input {i} asks for sighash type 0x{hash_type:02x}; only DEFAULT (0x00) and ALL (0x01) are signed",
            )

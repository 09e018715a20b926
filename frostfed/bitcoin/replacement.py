"""Fee bumps: an RBF replacement (BIP 125) of a payout that takes the extra fee from its change and
changes nothing else.

A replacement is judged against the transaction it replaces, taken from the member's own records:
the same inputs in the same order with the same sequences, the same version and lock time, the same
outputs in the same order paying the same scripts, every output that does not pay the federation with
exactly the same amount, and only the federation's change lower. So whichever of the two confirms
pays the same debts, and both cannot confirm (they spend the same coins). The fee must rise by at
least the incremental relay fee over the replacement's size (BIP 125 rule 4), which also makes the
absolute fee higher (rule 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bitcoin.core import CTransaction, CTxIn, CTxOut
from bitcoin.core.script import CScript

from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.standardness import dust_limit, keypath_vsize

INCREMENTAL_RELAY_FEE = 1.0
"""sat/vB: Bitcoin Core's -incrementalrelayfee default before v30 (1000 sat/kvB); the later, lower
default is met as well."""
MAX_BIP125_SEQUENCE = 0xFFFFFFFD
"""An input with a sequence at most this signals replaceability (BIP 125)."""


@dataclass(frozen=True)
class Bump:
    tx: CTransaction
    fee_sats: int
    original_fee_sats: int
    vsize: int

    @property
    def fee_rate(self) -> float:
        return self.fee_sats / self.vsize


def min_bump_fee(original_fee: int, vsize: int) -> int:
    """The least fee a replacement of `vsize` vB may pay over one that paid `original_fee` (rule 4)."""
    return original_fee + math.ceil(INCREMENTAL_RELAY_FEE * vsize)


def bump_tx(original: CTransaction, input_sats: int, change_vout: int, fee_rate: float) -> Bump:
    """`original` with its output `change_vout` lowered so that the fee is `fee_rate` (at least the
    BIP 125 minimum). Raises PolicyRejection when the change cannot pay it and stay above dust."""
    old_fee = input_sats - sum(o.nValue for o in original.vout)
    vsize = keypath_vsize(original)
    fee = max(math.ceil(fee_rate * vsize), min_bump_fee(old_fee, vsize))
    change = original.vout[change_vout]
    value = change.nValue - (fee - old_fee)
    script = bytes(change.scriptPubKey)
    if value < dust_limit(script):
        raise PolicyRejection(
            "bump_change_too_small",
            f"the change holds {change.nValue} sats; a fee of {fee} sats ({fee / vsize:.2f} sat/vB) would leave "
            f"{value}, below the dust limit of {dust_limit(script)}",
        )
    vout = [CTxOut(value, CScript(script)) if j == change_vout else o for j, o in enumerate(original.vout)]
    tx = CTransaction(original.vin, vout, original.nLockTime, original.nVersion)
    return Bump(tx, fee, old_fee, keypath_vsize(tx))


def check_replacement(
    original: CTransaction,
    replacement: CTransaction,
    input_sats: int,
    is_federation: Callable[[bytes], bool],
) -> Bump:
    """Refuse a replacement that is anything but `original` with a higher fee taken from the
    federation's change. `input_sats`: what the (common) inputs hold, from the member's chain data."""
    if replacement.nVersion != original.nVersion or replacement.nLockTime != original.nLockTime:
        raise PolicyRejection(
            "bump_changed", "the replacement changes the version or the lock time of the payout it replaces"
        )
    if not all(i.nSequence <= MAX_BIP125_SEQUENCE for i in original.vin):
        raise PolicyRejection("bump_not_replaceable", "the payout does not signal replaceability (BIP 125)")
    _same_inputs(original.vin, replacement.vin)
    if len(replacement.vout) != len(original.vout):
        raise PolicyRejection(
            "bump_outputs_changed",
            f"the replacement has {len(replacement.vout)} outputs, the payout it replaces {len(original.vout)}: "
            "a fee bump pays the same payees",
        )
    shrunk = False
    for j, (old, new) in enumerate(zip(original.vout, replacement.vout, strict=True)):
        script = bytes(old.scriptPubKey)
        if bytes(new.scriptPubKey) != script:
            raise PolicyRejection("bump_outputs_changed", f"output {j} pays another script than in the payout")
        if new.nValue == old.nValue:
            continue
        if not is_federation(script):
            raise PolicyRejection(
                "bump_amount_changed",
                f"output {j} pays {new.nValue} sats instead of {old.nValue}: a fee bump pays every payee the same",
            )
        if new.nValue > old.nValue:
            raise PolicyRejection(
                "bump_amount_changed", f"change output {j} grows from {old.nValue} to {new.nValue} sats"
            )
        shrunk = True
    old_fee = input_sats - sum(o.nValue for o in original.vout)
    fee = input_sats - sum(o.nValue for o in replacement.vout)
    vsize = keypath_vsize(replacement)
    if not shrunk or fee < min_bump_fee(old_fee, vsize):
        raise PolicyRejection(
            "bump_fee_too_low",
            f"the replacement pays {fee} sats, the payout {old_fee}: BIP 125 needs at least "
            f"{min_bump_fee(old_fee, vsize)} ({INCREMENTAL_RELAY_FEE} sat/vB more over {vsize} vB)",
        )
    return Bump(replacement, fee, old_fee, vsize)


def _same_inputs(old: Sequence[CTxIn], new: Sequence[CTxIn]) -> None:
    if len(old) != len(new):
        raise PolicyRejection(
            "bump_inputs_changed",
            f"the replacement spends {len(new)} coins, the payout {len(old)}: a fee bump spends the same coins",
        )
    for i, (a, b) in enumerate(zip(old, new, strict=True)):
        if a.prevout != b.prevout or a.nSequence != b.nSequence:
            raise PolicyRejection(
                "bump_inputs_changed", f"input {i} is not the coin the payout spends there: a fee bump spends the same"
            )

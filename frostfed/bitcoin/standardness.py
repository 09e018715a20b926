"""Bitcoin Core's default relay policy, as a member applies it before signing.

A signed transaction that never reaches miners would keep the debts it pays reserved, so a member
signs only what Bitcoin Core relays by default: the version, lock times, sequences, output types,
dust and weight limits, and the key-path sizes the fee is judged on. Kept apart from the chain checks
because these rules read only the transaction, never the chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bitcoin.core import CTransaction
from bitcoin.core.script import CScript

from frostfed.bitcoin.rejection import PolicyRejection

KEYPATH_WITNESS_WEIGHT = 1 + 1 + 64
"""Witness bytes of one key-path input signed with SIGHASH_DEFAULT: item count, length, signature."""

# Bitcoin Core's default relay policy (policy/policy.h), which a transaction must meet to reach miners.
MAX_STANDARD_TX_WEIGHT = 400_000
MIN_STANDARD_TX_NONWITNESS_SIZE = 65
LOCKTIME_THRESHOLD = 500_000_000
"""nLockTime values from here on are times, not heights."""
STANDARD_SEQUENCES = frozenset({0xFFFFFFFD, 0xFFFFFFFE, 0xFFFFFFFF})
"""Sequences with no relative lock time (BIP 68): opt-in replaceable, final with a lock time, final."""
DUST_RELAY_FEE = 3
"""sat/vB: Bitcoin Core's -dustrelayfee default (3000 sat/kvB)."""
MAX_OP_RETURN_RELAY = 83
"""Bytes of an OP_RETURN output script Bitcoin Core relays by default (-datacarriersize)."""


@dataclass(frozen=True)
class Standardness:
    """What a member signs beyond Bitcoin Core's defaults, each off unless configured ([policy]):
    version 3 (TRUC) transactions, OP_RETURN outputs, and consolidations (a transaction that pays
    nobody outside the federation)."""

    allow_version_3: bool = False
    allow_op_return: bool = False
    allow_consolidation: bool = False


def output_type(script: bytes) -> str | None:
    """The standard output type of `script` (Bitcoin Core's Solver), or None."""
    n = len(script)
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return "p2pkh"
    if n == 23 and script[:2] == b"\xa9\x14" and script[22:] == b"\x87":
        return "p2sh"
    if n == 22 and script[:2] == b"\x00\x14":
        return "p2wpkh"
    if n == 34 and script[:2] == b"\x00\x20":
        return "p2wsh"
    if n == 34 and script[:2] == b"\x51\x20":
        return "p2tr"
    if n >= 1 and script[0] == 0x6A and _push_only(script[1:]):
        return "op_return"
    return None


def _push_only(script: bytes) -> bool:
    try:
        return CScript(script).is_push_only()
    except Exception:
        return False


def dust_limit(script: bytes) -> int:
    """Bitcoin Core's GetDustThreshold at the default dust relay fee: the cost of an output and of
    the input that later spends it (witness programs pay a quarter for their witness), at 3 sat/vB.
    P2TR and P2WSH 330, P2WPKH 294, P2SH 540, P2PKH 546; an OP_RETURN output is never dust."""
    if script[:1] == b"\x6a":
        return 0
    size = 8 + _compact_size_len(len(script)) + len(script)
    witness_program = (
        4 <= len(script) <= 42 and (script[0] == 0 or 0x51 <= script[0] <= 0x60) and (script[1] + 2 == len(script))
    )
    size += 32 + 4 + 1 + (107 // 4) + 4 if witness_program else 32 + 4 + 1 + 107 + 4
    return size * DUST_RELAY_FEE


def _compact_size_len(n: int) -> int:
    return 1 if n < 0xFD else 3 if n <= 0xFFFF else 5


def keypath_weight(tx: CTransaction) -> int:
    """Weight of `tx` once every input carries a SIGHASH_DEFAULT key-path signature."""
    base = len(CTransaction(tx.vin, tx.vout, tx.nLockTime, tx.nVersion).serialize())
    return base * 4 + 2 + KEYPATH_WITNESS_WEIGHT * len(tx.vin)


def keypath_vsize(tx: CTransaction) -> int:
    """Virtual size of `tx` once every input carries a SIGHASH_DEFAULT key-path signature."""
    return math.ceil(keypath_weight(tx) / 4)


def check_standard(tx: CTransaction, tip_height: int, rules: Standardness) -> None:
    """Refuse what Bitcoin Core's default policy would not relay, or what could not confirm in the
    next blocks: the version, lock times, sequences, output types, dust and weight."""
    allowed_versions = (2, 3) if rules.allow_version_3 else (2,)
    if tx.nVersion not in allowed_versions:
        raise PolicyRejection(
            "nonstandard_version",
            f"transaction version {tx.nVersion} is not signed; only version "
            + " or ".join(map(str, allowed_versions))
            + ("" if rules.allow_version_3 else " (version 3 needs policy.allow_version_3)"),
        )
    if tx.nLockTime >= LOCKTIME_THRESHOLD:
        raise PolicyRejection(
            "locktime_time_based",
            f"nLockTime {tx.nLockTime} is a time; only block heights (at most the tip + 1) are signed",
        )
    if tx.nLockTime > tip_height + 1:
        raise PolicyRejection(
            "locktime_in_future",
            f"nLockTime {tx.nLockTime} is above the tip + 1 ({tip_height + 1}): the transaction could not "
            f"confirm for {tx.nLockTime - tip_height - 1} blocks",
        )
    for i, txin in enumerate(tx.vin):
        if txin.nSequence not in STANDARD_SEQUENCES:
            raise PolicyRejection(
                "nonstandard_sequence",
                f"input {i} has nSequence 0x{txin.nSequence:08x}, a relative lock time; "
                "only 0xfffffffd, 0xfffffffe or 0xffffffff are signed",
            )
    data_outputs = 0
    for j, out in enumerate(tx.vout):
        script = bytes(out.scriptPubKey)
        kind = output_type(script)
        if kind is None:
            raise PolicyRejection(
                "nonstandard_output",
                f"output {j} pays script {script.hex()[:80]}, not a standard type (P2PKH, P2SH, P2WPKH, P2WSH, P2TR)",
            )
        if kind == "op_return":
            if not rules.allow_op_return:
                raise PolicyRejection(
                    "op_return", f"output {j} is an OP_RETURN; set policy.allow_op_return to sign one"
                )
            if len(script) > MAX_OP_RETURN_RELAY or out.nValue != 0:
                raise PolicyRejection(
                    "nonstandard_output",
                    f"output {j}: an OP_RETURN output holds at most {MAX_OP_RETURN_RELAY} bytes and 0 sats",
                )
            data_outputs += 1
            continue
        dust = dust_limit(script)
        if out.nValue < dust:
            raise PolicyRejection(
                "dust_output", f"output {j} pays {out.nValue} sats, below the {kind} dust limit of {dust} sats"
            )
    if data_outputs > 1:
        raise PolicyRejection("nonstandard_output", "more than one OP_RETURN output is not relayed")
    weight = keypath_weight(tx)
    if weight > MAX_STANDARD_TX_WEIGHT:
        raise PolicyRejection(
            "tx_too_large",
            f"the signed transaction would weigh {weight} WU, above the standard limit of {MAX_STANDARD_TX_WEIGHT}; "
            "split the payout",
        )
    base = len(CTransaction(tx.vin, tx.vout, tx.nLockTime, tx.nVersion).serialize())
    if base < MIN_STANDARD_TX_NONWITNESS_SIZE:
        raise PolicyRejection(
            "tx_too_small", f"the transaction is {base} bytes without witnesses; at least 65 are relayed"
        )

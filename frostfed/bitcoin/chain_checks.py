"""The payout checks no configuration can turn off, judged on this member's own chain data.

Every input is an unspent, confirmed (coinbase: mature) output paying a federation script, with
amount and script taken from this member's chain source; every output either returns to the
federation (change) or is a payout, and something is paid outside the federation; the fee rate is
inside the configured bounds; and the transaction is standard (`standardness`). The result, a
`CheckedPayout`, is what the pluggable policies (`policy`) then judge.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from bitcoin.core import CTransaction, CTxOut, b2lx
from bitcoin.core.script import CScript

from frostfed.bitcoin.chain import ChainSource, Utxo
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.standardness import Standardness, check_standard, keypath_vsize, output_type

COINBASE_MATURITY = 100
"""A coinbase output may be spent in a block 100 deep; the mempool accepts it at 100 confirmations."""


FederationScripts = Callable[[bytes], bool] | Collection[bytes]
"""The output scripts this member knows belong to the federation: a predicate or a collection."""


def _owner_predicate(scripts: FederationScripts) -> Callable[[bytes], bool]:
    if callable(scripts):
        return scripts
    known = frozenset(bytes(s) for s in scripts)
    return lambda script: bytes(script) in known


@dataclass(frozen=True)
class FeeBounds:
    """Accepted fee rates in sat/vB (vsize counted with the key-path signatures), and an absolute cap."""

    min_sat_per_vb: float = 1.0
    max_sat_per_vb: float = 200.0
    max_fee_sats: int | None = None


@dataclass(frozen=True)
class CheckedPayout:
    """A transaction that passed the chain checks, with everything about it taken from the chain."""

    tx: CTransaction
    txid: str
    inputs: tuple[Utxo, ...]
    change_outputs: tuple[int, ...]  # indexes of outputs paying the federation
    payouts: dict[bytes, int] = field(default_factory=dict)  # script -> sats, summed over outputs
    fee_sats: int = 0
    vsize: int = 0
    tip_height: int = 0

    @property
    def fee_rate(self) -> float:
        return self.fee_sats / self.vsize

    @property
    def spent_outputs(self) -> list[CTxOut]:
        """The spent outputs for the BIP 341 sighash, from the chain (never from the request)."""
        return [CTxOut(u.amount_sats, CScript(u.script_pubkey)) for u in self.inputs]

    @property
    def outpoints(self) -> list[tuple[str, int]]:
        return [(u.txid, u.vout) for u in self.inputs]


class ChainChecks:
    """The checks no configuration can turn off."""

    def __init__(
        self,
        chain: ChainSource,
        federation_scripts: FederationScripts,
        fee_bounds: FeeBounds | None = None,
        min_confirmations: int = 1,
        coinbase_maturity: int = COINBASE_MATURITY,
        standardness: Standardness | None = None,
    ):
        if min_confirmations < 1:
            raise ValueError("inputs must be confirmed: min_confirmations >= 1")
        self.chain = chain
        self.owned = _owner_predicate(federation_scripts)
        self.fee_bounds = fee_bounds or FeeBounds()
        self.min_confirmations = min_confirmations
        self.coinbase_maturity = coinbase_maturity
        self.standardness = standardness or Standardness()

    def check(self, tx: CTransaction) -> CheckedPayout:
        """Raises PolicyRejection, or ChainError when the chain source cannot answer (then: do not sign)."""
        if not tx.vin:
            raise PolicyRejection("malformed", "the transaction has no inputs")
        if not tx.vout:
            raise PolicyRejection("malformed", "the transaction has no outputs")
        if not tx.wit.is_null() or any(len(txin.scriptSig) for txin in tx.vin):
            raise PolicyRejection("malformed", "the transaction to sign already carries signatures")
        seen: set[tuple[str, int]] = set()
        inputs: list[Utxo] = []
        tip = self.chain.tip_height()
        outpoints = [(b2lx(txin.prevout.hash), txin.prevout.n) for txin in tx.vin]
        distinct = list(dict.fromkeys(outpoints))
        found = dict(zip(distinct, self.chain.get_utxos(distinct), strict=True))  # one round trip for all
        for i, outpoint in enumerate(outpoints):
            name = f"input {i} ({outpoint[0]}:{outpoint[1]})"
            if outpoint in seen:
                raise PolicyRejection("duplicate_input", f"{name} is spent twice in the transaction")
            seen.add(outpoint)
            utxo = found[outpoint]
            if utxo is None:
                raise PolicyRejection("input_spent", f"{name} is already spent or does not exist")
            if not self.owned(utxo.script_pubkey):
                raise PolicyRejection(
                    "input_not_owned", f"{name} pays script {utxo.script_pubkey.hex()}, not a federation key"
                )
            if utxo.confirmations < self.min_confirmations:
                raise PolicyRejection(
                    "input_unconfirmed",
                    f"{name} has {utxo.confirmations} confirmations, {self.min_confirmations} required",
                )
            if utxo.coinbase and utxo.confirmations < self.coinbase_maturity:
                raise PolicyRejection(
                    "input_immature",
                    f"{name} is a coinbase output with {utxo.confirmations} confirmations; "
                    f"it matures at {self.coinbase_maturity}",
                )
            inputs.append(utxo)

        change: list[int] = []
        payouts: dict[bytes, int] = {}
        for j, out in enumerate(tx.vout):
            script = bytes(out.scriptPubKey)
            if out.nValue < 0 or (out.nValue == 0 and output_type(script) != "op_return"):
                raise PolicyRejection("malformed", f"output {j} pays {out.nValue} sats")
            if self.owned(script):
                change.append(j)
            elif output_type(script) != "op_return":
                payouts[script] = payouts.get(script, 0) + out.nValue

        total_in = sum(u.amount_sats for u in inputs)
        total_out = sum(o.nValue for o in tx.vout)
        fee = total_in - total_out
        if fee < 0:
            raise PolicyRejection(
                "fee_negative", f"outputs pay {total_out} sats but the inputs hold only {total_in} sats"
            )
        vsize = keypath_vsize(tx)
        rate = fee / vsize
        bounds = self.fee_bounds
        paying = f"fee {fee} sats for {vsize} vB is {rate:.2f} sat/vB"
        if rate > bounds.max_sat_per_vb:
            raise PolicyRejection(
                "fee_too_high",
                f"{paying}, above the limit {bounds.max_sat_per_vb}",
            )
        if bounds.max_fee_sats is not None and fee > bounds.max_fee_sats:
            raise PolicyRejection("fee_too_high", f"fee {fee} sats is above the limit {bounds.max_fee_sats} sats")
        if rate < bounds.min_sat_per_vb:
            raise PolicyRejection(
                "fee_too_low",
                f"{paying}, below the minimum {bounds.min_sat_per_vb}",
            )
        check_standard(tx, tip, self.standardness)
        if not payouts and not self.standardness.allow_consolidation:
            raise PolicyRejection(
                "no_payee",
                "the transaction pays nobody outside the federation (only fees and change); "
                "set policy.allow_consolidation to sign consolidations",
            )
        return CheckedPayout(
            tx=tx,
            txid=b2lx(tx.GetTxid()),
            inputs=tuple(inputs),
            change_outputs=tuple(change),
            payouts=payouts,
            fee_sats=fee,
            vsize=vsize,
            tip_height=tip,
        )

"""The payout policy a member runs before it signs anything.

Two layers:
- `ChainChecks`, always: every input is an unspent, confirmed (coinbase: mature) output paying a
  federation script, with amount and script taken from this member's chain source; every output either
  returns to the federation (change) or is a payout; the fee rate is inside the configured bounds.
- pluggable `Policy` objects that judge the payouts: `LedgerPolicy` (this member's own ledger of debts)
  and `CommandPolicy` (an external program, `payout-check-command`, that can defer to the pool's
  accounting).

A refusal is a `PolicyRejection` with a stable machine code and a message a person can act on.
`PayoutPolicy.approve()` runs everything, then lets each policy record the approval (the ledger reserves
the amounts) before the caller may sign.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bitcoin.core import CTransaction, CTxOut, b2lx
from bitcoin.core.script import CScript

from frostfed.bitcoin.chain import ChainSource, Utxo
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.taproot import address_from_script

COINBASE_MATURITY = 100
"""A coinbase output may be spent in a block 100 deep; the mempool accepts it at 100 confirmations."""

KEYPATH_WITNESS_WEIGHT = 1 + 1 + 64
"""Witness bytes of one key-path input signed with SIGHASH_DEFAULT: item count, length, signature."""


class PolicyRejection(Exception):
    """A signing request this member refuses. `code` is stable for programs; `message` is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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


def keypath_vsize(tx: CTransaction) -> int:
    """Virtual size of `tx` once every input carries a SIGHASH_DEFAULT key-path signature."""
    base = len(CTransaction(tx.vin, tx.vout, tx.nLockTime, tx.nVersion).serialize())
    weight = base * 4 + 2 + KEYPATH_WITNESS_WEIGHT * len(tx.vin)
    return math.ceil(weight / 4)


class ChainChecks:
    """The checks no configuration can turn off."""

    def __init__(
        self,
        chain: ChainSource,
        federation_scripts: FederationScripts,
        fee_bounds: FeeBounds | None = None,
        min_confirmations: int = 1,
        coinbase_maturity: int = COINBASE_MATURITY,
    ):
        if min_confirmations < 1:
            raise ValueError("inputs must be confirmed: min_confirmations >= 1")
        self.chain = chain
        self.owned = _owner_predicate(federation_scripts)
        self.fee_bounds = fee_bounds or FeeBounds()
        self.min_confirmations = min_confirmations
        self.coinbase_maturity = coinbase_maturity

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
        for i, txin in enumerate(tx.vin):
            outpoint = (b2lx(txin.prevout.hash), txin.prevout.n)
            name = f"input {i} ({outpoint[0]}:{outpoint[1]})"
            if outpoint in seen:
                raise PolicyRejection("duplicate_input", f"{name} is spent twice in the transaction")
            seen.add(outpoint)
            utxo = self.chain.get_utxo(*outpoint)
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
            if out.nValue <= 0:
                raise PolicyRejection("malformed", f"output {j} pays {out.nValue} sats")
            if self.owned(script):
                change.append(j)
            else:
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


class Policy(Protocol):
    """A pluggable payout rule. `check` raises PolicyRejection; `approved` records an accepted payout
    (called once every policy has accepted it, before any signature is made)."""

    def check(self, payout: CheckedPayout) -> None: ...

    def approved(self, payout: CheckedPayout) -> None: ...


class LedgerPolicy:
    """Pay each miner at most what this member's ledger says it is owed, and nothing to unknown scripts."""

    def __init__(self, ledger: Ledger, network: str = "regtest"):
        self.ledger = ledger
        self.network = network

    def _name(self, script: bytes) -> str:
        return address_from_script(script, self.network) or f"script {script.hex()}"

    def check(self, payout: CheckedPayout) -> None:
        for script, sats in payout.payouts.items():
            if not self.ledger.knows(script):
                raise PolicyRejection(
                    "unknown_output", f"{self._name(script)} is neither a federation key nor in the ledger"
                )
            debt = self.ledger.status(script, replacing=payout.outpoints)
            if sats <= debt.available:
                continue
            settled = f"credited {debt.credited}, paid {debt.paid}, awaiting confirmation {debt.reserved}"
            if debt.available <= 0:
                raise PolicyRejection(
                    "already_paid",
                    f"{self._name(script)} is owed nothing more ({settled}); request pays {sats}",
                )
            raise PolicyRejection(
                "overpayment",
                f"{self._name(script)} is paid {sats} sats but is owed {debt.available} ({settled})",
            )

    def approved(self, payout: CheckedPayout) -> None:
        self.ledger.reserve(payout.txid, payout.outpoints, payout.payouts, payout.tip_height)


def payout_json(payout: CheckedPayout, network: str) -> dict[str, Any]:
    """The decoded transaction handed to `payout-check-command` (amounts in sats, scripts in hex)."""
    change = set(payout.change_outputs)
    return {
        "txid": payout.txid,
        "version": payout.tx.nVersion,
        "locktime": payout.tx.nLockTime,
        "network": network,
        "inputs": [
            {
                "txid": u.txid,
                "vout": u.vout,
                "amount_sats": u.amount_sats,
                "script_pubkey": u.script_pubkey.hex(),
                "confirmations": u.confirmations,
                "coinbase": u.coinbase,
            }
            for u in payout.inputs
        ],
        "outputs": [
            {
                "index": j,
                "amount_sats": o.nValue,
                "script_pubkey": bytes(o.scriptPubKey).hex(),
                "address": address_from_script(bytes(o.scriptPubKey), network),
                "change": j in change,
            }
            for j, o in enumerate(payout.tx.vout)
        ],
        "fee_sats": payout.fee_sats,
        "vsize": payout.vsize,
        "tip_height": payout.tip_height,
        "raw_unsigned_tx": payout.tx.serialize().hex(),
    }


class CommandPolicy:
    """`payout-check-command`: an external program decides.

    The program gets `payout_json()` on stdin and answers on stdout with one JSON object,
    `{"accept": true}` or `{"accept": false, "reason": "..."}`. A non-zero exit, a timeout or any other
    answer is a refusal (code `check_command_failed`): a member never signs because a check broke.
    """

    def __init__(self, command: str | Sequence[str], network: str = "regtest", timeout: float = 30.0):
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise ValueError("payout-check-command is empty")
        self.network = network
        self.timeout = timeout

    def check(self, payout: CheckedPayout) -> None:
        what = f"payout-check-command {self.argv[0]!r}"
        try:
            proc = subprocess.run(
                self.argv,
                input=json.dumps(payout_json(payout, self.network)),
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            raise PolicyRejection("check_command_failed", f"{what} gave no answer within {self.timeout} s") from None
        except OSError as e:
            raise PolicyRejection("check_command_failed", f"{what} could not run: {e}") from None
        if proc.returncode != 0:
            detail = proc.stderr.strip()[-300:] or "no message"
            raise PolicyRejection("check_command_failed", f"{what} exited with {proc.returncode}: {detail}")
        try:
            answer = json.loads(proc.stdout)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("accept"), bool):
            raise PolicyRejection(
                "check_command_failed",
                f"{what} answered {proc.stdout.strip()[:200]!r}, not {{'accept': bool}}",
            )
        if not answer["accept"]:
            reason = str(answer.get("reason") or "no reason given")
            raise PolicyRejection("rejected_by_check_command", f"{what} refused: {reason}")

    def approved(self, payout: CheckedPayout) -> None:
        return None


APPROVALS = threading.Lock()
"""Checking and recording an approval is one step: two payouts judged at once in worker threads must
not both pass the ledger before either reserves (that would pay the same debt twice)."""


class PayoutPolicy:
    """Chain checks, then every pluggable policy in order; the first refusal wins."""

    def __init__(self, chain_checks: ChainChecks, policies: Sequence[Policy] = ()):
        self.chain_checks = chain_checks
        self.policies = list(policies)

    def check(self, tx: CTransaction) -> CheckedPayout:
        payout = self.chain_checks.check(tx)
        for policy in self.policies:
            policy.check(payout)
        return payout

    def approve(self, tx: CTransaction, also_check: Callable[[CheckedPayout], None] | None = None) -> CheckedPayout:
        """Check (with `also_check` last, e.g. a PSBT's claims against the chain), then record the
        approval with every policy. Sign only what this returns."""
        with APPROVALS:
            payout = self.check(tx)
            if also_check is not None:
                also_check(payout)
            for policy in self.policies:
                policy.approved(payout)
        return payout

"""The payout policy a member runs before it signs anything.

Two layers:
- `ChainChecks`, always: every input is an unspent, confirmed (coinbase: mature) output paying a
  federation script, with amount and script taken from this member's chain source; every output either
  returns to the federation (change) or is a payout, and something is paid outside the federation;
  the fee rate is inside the configured bounds; and the transaction is standard by Bitcoin Core's
  default relay policy (`Standardness`), so what is signed can confirm: a signed transaction that
  never confirms would keep the debts it pays reserved.
- pluggable `Policy` objects that judge the payouts: `LedgerPolicy` (this member's own ledger of debts)
  and `CommandPolicy` (an external program, `payout-check-command`, that can defer to the pool's
  accounting).

A refusal is a `PolicyRejection` with a stable machine code and a message a person can act on.
`PayoutPolicy.approve()` is the one decide-and-reserve path (payouts, PSBTs, the federation's signing
requests): it runs everything, then lets each policy record the approval (the ledger reserves the
amounts, the fee budget counts the fee) before the caller may sign.
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
from frostfed.bitcoin.psbt import PSBT_IN_NON_WITNESS_UTXO, Psbt, PsbtError
from frostfed.bitcoin.taproot import address_from_script

COINBASE_MATURITY = 100
"""A coinbase output may be spent in a block 100 deep; the mempool accepts it at 100 confirmations."""

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

SIGHASH_DEFAULT = 0x00
SIGHASH_ALL = 0x01


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
        debts = self.ledger.statuses(payout.payouts, replacing=payout.outpoints)  # one read for all outputs
        for script, sats in payout.payouts.items():
            debt = debts.get(script)
            if debt is None:
                raise PolicyRejection(
                    "unknown_output", f"{self._name(script)} is neither a federation key nor in the ledger"
                )
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
        """The one decide-and-reserve path: the chain checks, then `also_check` (what the request
        itself claims, e.g. a PSBT's claims against the chain), then every policy; only then is the
        approval recorded with every policy. Sign only what this returns."""
        with APPROVALS:
            payout = self.chain_checks.check(tx)
            if also_check is not None:
                also_check(payout)
            for policy in self.policies:
                policy.check(payout)
            for policy in self.policies:
                policy.approved(payout)
        return payout


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

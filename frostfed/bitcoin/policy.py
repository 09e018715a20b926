"""The payout policy a member runs before it signs anything.

Two layers:
- `chain_checks.ChainChecks`, always: inputs, outputs, fee bounds and standardness, judged on this
  member's own chain data (see that module).
- pluggable `Policy` objects that judge the payouts: `LedgerPolicy` (this member's own ledger of debts)
  and `CommandPolicy` (an external program, `payout-check-command`, that can defer to the pool's
  accounting).

A refusal is a `rejection.PolicyRejection` with a stable machine code and a message a person can act
on. `PayoutPolicy.approve()` is the one decide-and-reserve path (payouts, PSBTs, the federation's
signing requests): it runs everything, then lets each policy record the approval (the ledger reserves
the amounts, the fee budget counts the fee) before the caller may sign.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bitcoin.core import CTransaction

from frostfed.bitcoin.chain_checks import ChainChecks, CheckedPayout
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.taproot import address_from_script


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

"""What a signing request carries and how a member judges it.

A request names a transaction and, for each input and each change output, the derivation path of
the federation key it claims. The member takes nothing else on trust: the policy fetches every
spent output from the member's own chain source, and the scripts behind the claimed paths are
derived locally, so a wrong path only makes the member refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitcoin.core import CTransaction

from frostfed.bitcoin.policy import CheckedPayout, PayoutPolicy, PolicyRejection
from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, taproot_sighash
from frostfed.federation.epoch_keys import EpochKeys, PathError, check_path
from frostfed.federation.messages import Message, MessageError
from frostfed.frost.roast import SigningTask

MAX_TX_BYTES = 400_000


@dataclass(frozen=True)
class SigningRequest:
    id: str
    epoch: int
    kind: str  # "payout" or "psbt"
    tx: CTransaction
    input_paths: tuple[tuple[int, int], ...]
    change_paths: dict[int, tuple[int, int]]  # output index -> path

    def to_body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "epoch": self.epoch,
            "kind": self.kind,
            "tx": self.tx.serialize().hex(),
            "input_paths": [list(p) for p in self.input_paths],
            "change_paths": {str(k): list(v) for k, v in self.change_paths.items()},
        }

    @classmethod
    def from_message(cls, msg: Message) -> SigningRequest:
        rid = msg.text("id", 64)
        kind = msg.text("kind", 16)
        if kind not in ("payout", "psbt"):
            raise MessageError(f"unknown request kind {kind!r}")
        raw = msg.hexbytes("tx", max_len=MAX_TX_BYTES)
        try:
            tx = CTransaction.deserialize(raw)
        except Exception:
            raise MessageError("request carries a transaction that does not parse") from None
        paths = msg.get("input_paths", list)
        changes = msg.get("change_paths", dict)
        try:
            input_paths = tuple(check_path(p) for p in paths)
            change_paths = {int(k): check_path(v) for k, v in changes.items()}
        except (PathError, ValueError, TypeError):
            raise MessageError("request carries malformed derivation paths") from None
        if len(input_paths) != len(tx.vin):
            raise MessageError("request needs one derivation path per input")
        if any(not 0 <= i < len(tx.vout) for i in change_paths):
            raise MessageError("request names a change output that does not exist")
        return cls(rid, msg.integer("epoch"), kind, tx, input_paths, change_paths)


def federation_scripts(keys: EpochKeys, req: SigningRequest) -> set[bytes]:
    """The scripts this member itself derives for the paths the request names."""
    return {keys.script(p) for p in req.input_paths} | {keys.script(p) for p in req.change_paths.values()}


def check_change(keys: EpochKeys, req: SigningRequest) -> None:
    for idx, path in req.change_paths.items():
        if bytes(req.tx.vout[idx].scriptPubKey) != keys.script(path):
            raise PolicyRejection("bad_change", f"output {idx} does not pay the federation key at {list(path)}")


def signing_tasks(keys: EpochKeys, req: SigningRequest, payout: CheckedPayout) -> list[SigningTask]:
    """One BIP 445 task per input: the BIP 341 sighash over the chain's spent outputs, with the
    BIP32 and TapTweak tweaks of the input's path. Refuses an input whose chain script is not the
    key of its claimed path."""
    spent = payout.spent_outputs
    tasks = []
    for i, path in enumerate(req.input_paths):
        if bytes(spent[i].scriptPubKey) != keys.script(path):
            raise PolicyRejection("input_not_owned", f"input {i} is not the federation key at {list(path)}")
        tasks.append(keys.task(path, taproot_sighash(req.tx, i, spent, SIGHASH_DEFAULT)))
    return tasks


def judge(keys: EpochKeys, req: SigningRequest, policy: PayoutPolicy) -> list[SigningTask]:
    """Run the whole policy and record the approval (the ledger reserves the payouts, so no second
    request can pay the same debts); returns what to sign, or raises PolicyRejection / ChainError."""
    check_change(keys, req)
    payout = policy.check(req.tx)
    tasks = signing_tasks(keys, req, payout)
    for p in policy.policies:
        p.approved(payout)
    return tasks

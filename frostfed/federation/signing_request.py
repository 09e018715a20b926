"""What a signing request carries and how a member judges it.

A request names a transaction and, for each input and each change output, the derivation path of
the federation key it claims. The member takes nothing else on trust: the policy fetches every
spent output from the member's own chain source, and the scripts behind the claimed paths are
derived locally, so a wrong path only makes the member refuse.

A `psbt` request carries the PSBT itself, so every signer (not only the member whose user handed it
in) checks what the PSBT claims about the coins it spends against its own chain data. A `bump`
request names the payout it replaces (`replaces`); each member judges it against its own record of
that payout (`fee_bump.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bitcoin.core import CTransaction, CTxIn
from bitcoin.core.script import CScript

from frostfed.bitcoin.chain_checks import CheckedPayout
from frostfed.bitcoin.policy import PayoutPolicy
from frostfed.bitcoin.psbt import Psbt, PsbtError
from frostfed.bitcoin.psbt_claims import check_psbt_claims
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, keypath_witness_stack, taproot_sighash, with_keypath_witnesses
from frostfed.federation.epoch_keys import EpochKeys, PathError, check_path
from frostfed.federation.messages import Kind, Message, MessageError, Typed
from frostfed.frost.roast import SigningTask
from frostfed.frost.secp import schnorr_verify

MAX_TX_BYTES = 400_000
MAX_PSBT_BYTES = 1_000_000


@dataclass(frozen=True)
class SigningRequest(Typed):
    """The `sign_request` message: what the coordinator asks every member to sign."""

    KIND: ClassVar[Kind] = Kind.SIGN_REQUEST
    id: str
    epoch: int
    kind: str  # "payout", "psbt", "transition" or "bump"
    tx: CTransaction
    input_paths: tuple[tuple[int, int] | None, ...]  # None: not the federation's (a joiner's bond input)
    change_paths: dict[int, tuple[int, int]]  # output index -> path
    transition: dict[str, Any] | None = None  # proposal, new epoch recovery data, bond key
    psbt: bytes | None = None  # kind "psbt": the serialized PSBT whose claims every signer checks
    deadline: int | None = None  # unix time after which the coordinator has given up: late copies are dropped
    replaces: str | None = None  # kind "bump": the id of the request whose payout it replaces

    def to_body(self) -> dict[str, Any]:
        body = {
            "id": self.id,
            "epoch": self.epoch,
            "kind": self.kind,
            "tx": self.tx.serialize().hex(),
            "input_paths": [list(p) if p is not None else None for p in self.input_paths],
            "change_paths": {str(k): list(v) for k, v in self.change_paths.items()},
        }
        if self.transition is not None:
            body["transition"] = self.transition
        if self.psbt is not None:
            body["psbt"] = self.psbt.hex()
        if self.deadline is not None:
            body["deadline"] = self.deadline
        if self.replaces is not None:
            body["replaces"] = self.replaces
        return body

    def body(self) -> dict[str, Any]:
        return self.to_body()

    @classmethod
    def decode(cls, msg: Message) -> SigningRequest:
        return cls.from_message(msg)

    @property
    def fed_inputs(self) -> list[tuple[int, tuple[int, int]]]:
        return [(i, p) for i, p in enumerate(self.input_paths) if p is not None]

    @classmethod
    def from_message(cls, msg: Message) -> SigningRequest:
        rid = msg.text("id", 64)
        if not rid or not all(c.isascii() and (c.isalnum() or c in "-_") for c in rid):
            raise MessageError("request id must be letters, digits, '-' or '_'")
        kind = msg.text("kind", 16)
        if kind not in ("payout", "psbt", "transition", "bump"):
            raise MessageError(f"unknown request kind {kind!r}")
        raw = msg.hexbytes("tx", max_len=MAX_TX_BYTES)
        try:
            tx = CTransaction.deserialize(raw)
        except Exception:
            raise MessageError("request carries a transaction that does not parse") from None
        paths = msg.get("input_paths", list)
        changes = msg.get("change_paths", dict)
        if len(paths) != len(tx.vin):
            raise MessageError("request needs one derivation path per input")
        try:
            input_paths = tuple(None if p is None and kind == "transition" else check_path(p) for p in paths)
            change_paths = {_output_index(k): check_path(v) for k, v in changes.items()}
        except (PathError, ValueError, TypeError):
            raise MessageError("request carries malformed derivation paths") from None
        if not any(p is not None for p in input_paths):
            raise MessageError("request has no federation input")
        transition = None
        if kind == "transition":
            transition = msg.get("transition", dict)
        if any(not 0 <= i < len(tx.vout) for i in change_paths):
            raise MessageError("request names a change output that does not exist")
        psbt = None
        if "psbt" in msg.body:
            if kind != "psbt":
                raise MessageError(f"a {kind} request carries no PSBT")
            psbt = msg.hexbytes("psbt", max_len=MAX_PSBT_BYTES)
        deadline = msg.integer("deadline") if "deadline" in msg.body else None
        replaces = None
        if kind == "bump":
            replaces = msg.text("replaces", 64)
        elif "replaces" in msg.body:
            raise MessageError(f"a {kind} request replaces nothing")
        return cls(
            rid, msg.integer("epoch"), kind, tx, input_paths, change_paths, transition, psbt, deadline, replaces
        )


def _output_index(key: str) -> int:
    """JSON object keys are strings; only the canonical decimal form names an output."""
    if not isinstance(key, str) or not (0 < len(key) <= 10 and key.isascii() and key.isdigit()) or str(int(key)) != key:
        raise PathError(f"change output index {key[:20]!r} is not a number")
    return int(key)


def federation_scripts(keys: EpochKeys, req: SigningRequest) -> set[bytes]:
    """The scripts this member itself derives for the paths the request names."""
    inputs = {keys.script(p) for _, p in req.fed_inputs}
    return inputs | {keys.script(p) for p in req.change_paths.values()}


def check_change(keys: EpochKeys, req: SigningRequest, canonical: tuple[int, int] | None = None) -> None:
    """Every change output pays the federation key of its path; with `canonical` (the change path every
    member computes from the anchor chain), that path is the only one allowed: a coordinator cannot
    send change where no member looks (`m/1/2147483647`) nor reuse another's address."""
    for idx, path in req.change_paths.items():
        if canonical is not None and tuple(path) != canonical:
            raise PolicyRejection(
                "bad_change",
                f"output {idx} names change path m/{path[0]}/{path[1]}; every member computes "
                f"m/{canonical[0]}/{canonical[1]} as the next change",
            )
        if bytes(req.tx.vout[idx].scriptPubKey) != keys.script(path):
            raise PolicyRejection("bad_change", f"output {idx} does not pay the federation key at {list(path)}")


def signing_tasks(keys: EpochKeys, req: SigningRequest, payout: CheckedPayout) -> list[SigningTask]:
    """One BIP 445 task per input: the BIP 341 sighash over the chain's spent outputs, with the
    BIP32 and TapTweak tweaks of the input's path. Refuses an input whose chain script is not the
    key of its claimed path."""
    return tasks_for_inputs(keys, req, payout.spent_outputs)


def tasks_for_inputs(keys: EpochKeys, req: SigningRequest, spent: list[Any]) -> list[SigningTask]:
    tasks = []
    for i, path in req.fed_inputs:
        if bytes(spent[i].scriptPubKey) != keys.script(path):
            raise PolicyRejection("input_not_owned", f"input {i} is not the federation key at {list(path)}")
        tasks.append(keys.task(path, taproot_sighash(req.tx, i, spent, SIGHASH_DEFAULT)))
    return tasks


def check_psbt(req: SigningRequest, payout: CheckedPayout) -> None:
    """A psbt request must carry its PSBT, for the same transaction, with claims the chain confirms."""
    if req.kind != "psbt":
        return
    if req.psbt is None:
        raise PolicyRejection("psbt_missing", "a psbt request must carry the PSBT, so its claims can be checked")
    try:
        psbt = Psbt.from_bytes(req.psbt)
    except (PsbtError, ValueError) as e:
        raise PolicyRejection("psbt_malformed", f"the request's PSBT does not parse: {e}") from None
    check_psbt_claims(psbt, payout)


def judge(keys: EpochKeys, req: SigningRequest, policy: PayoutPolicy) -> list[SigningTask]:
    """Run the whole policy through its one decide-and-reserve path (`PayoutPolicy.approve`: the
    ledger reserves the payouts, so no second request can pay the same debts; the fee budget counts
    the fee); returns what to sign, or raises PolicyRejection / ChainError."""
    check_change(keys, req)
    tasks: list[SigningTask] = []

    def request_checks(payout: CheckedPayout) -> None:
        check_psbt(req, payout)
        tasks.extend(signing_tasks(keys, req, payout))

    policy.approve(req.tx, also_check=request_checks)
    return tasks


def signed_transaction(
    keys: EpochKeys,
    req: SigningRequest,
    tasks: list[SigningTask],
    signatures: list[bytes] | tuple[bytes, ...],
    extra_inputs: dict[int, tuple[bytes, list[bytes]]],
) -> CTransaction:
    """The request's transaction with every federation input's key-path signature (each checked against
    the key of its path before it goes in) and the finished scriptSig and witness of every other input.
    Raises ValueError if an aggregate signature does not verify."""
    stacks = {i: witness for i, (_, witness) in extra_inputs.items()}
    for (i, path), task, sig in zip(req.fed_inputs, tasks, signatures, strict=True):
        if not schnorr_verify(task.msg, keys.output_key(path), sig):
            raise ValueError(f"aggregate signature {i} does not verify")
        stacks[i] = keypath_witness_stack(sig, SIGHASH_DEFAULT)
    signed = with_keypath_witnesses(req.tx, stacks)
    if any(script_sig for script_sig, _ in extra_inputs.values()):
        vin = [
            CTxIn(txin.prevout, CScript(extra_inputs.get(i, (b"", []))[0]), txin.nSequence)
            for i, txin in enumerate(signed.vin)
        ]
        signed = CTransaction(vin, signed.vout, signed.nLockTime, signed.nVersion, signed.wit)
    return signed

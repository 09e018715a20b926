"""The control commands, defined once for both front ends.

The standalone daemon's JSON-RPC server and the Core Lightning plugin both expose exactly this table:
each command names its parameters (so positional and keyword calls bind alike, as `lightning-cli`
and `lightning-cli -k` send them), validates them (`command_params`), and calls the federation service. Every failure
reaches the caller as an `RpcError` with a code and a human message, never as a stack trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from frostfed.federation import command_params as check
from frostfed.federation.command_params import Validator

# JSON-RPC 2.0 codes, then frostfed's own (positive, as Core Lightning plugins use).
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NOT_READY = 1401
POLICY_REJECTED = 1402
SIGNING_FAILED = 1403
CHAIN_ERROR = 1404
NOT_FOUND = 1405
MEMBERSHIP_REFUSED = 1406


class RpcError(Exception):
    """A command failure as the caller sees it."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


class Service(Protocol):
    """What the commands need from a running member (frostfed.federation.service implements it)."""

    async def status(self) -> dict[str, Any]: ...
    async def newaddr(self) -> dict[str, Any]: ...
    async def descriptor(self) -> dict[str, Any]: ...
    async def payout(self, outputs: list[dict[str, Any]], feerate: float | None) -> dict[str, Any]: ...
    async def bumpfee(self, id: str, feerate: float | None) -> dict[str, Any]: ...
    async def sign(self, psbt: str) -> dict[str, Any]: ...
    async def members(self) -> dict[str, Any]: ...
    async def requests(self, request_id: str | None) -> dict[str, Any]: ...
    async def join(self, id: str, address: str, bond_sats: int | None, lock_blocks: int | None) -> dict[str, Any]: ...
    async def leave(self) -> dict[str, Any]: ...
    async def expel(self, member: str) -> dict[str, Any]: ...
    async def admit(self, id: str, min_bond_sats: int | None) -> dict[str, Any]: ...
    async def approve_expel(self, member: str) -> dict[str, Any]: ...
    async def revoke(self, member: str) -> dict[str, Any]: ...
    async def abort_change(self, reason: str | None) -> dict[str, Any]: ...
    async def epochs(self) -> dict[str, Any]: ...
    async def bond_claim(self, address: str) -> dict[str, Any]: ...
    async def ledger_credit(self, address: str, sats: int, key: str) -> dict[str, Any]: ...
    async def ledger(self, address: str | None) -> dict[str, Any]: ...
    async def ledger_history(self, address: str | None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Param:
    name: str
    check: Validator
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    params: tuple[Param, ...]
    call: Callable[..., Awaitable[Any]]

    @property
    def usage(self) -> str:
        return " ".join(p.name if p.required else f"[{p.name}]" for p in self.params)

    @property
    def help_text(self) -> str:
        """The summary, then one line per parameter: what `lightning-cli help` shows."""
        lines = [self.summary]
        for p in self.params:
            lines.append(f"{p.name}{'' if p.required else ' (optional)'}: {p.doc}")
        return "\n".join(lines)

    def bind(self, params: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
        """Map positional or keyword arguments onto the parameters, validating each."""
        if params is None:
            params = {}
        if isinstance(params, list):
            if len(params) > len(self.params):
                raise RpcError(INVALID_PARAMS, f"{self.name} takes at most {len(self.params)} parameters")
            given = {p.name: v for p, v in zip(self.params, params, strict=False)}
        elif isinstance(params, dict):
            unknown = sorted(set(params) - {p.name for p in self.params})
            if unknown:
                raise RpcError(INVALID_PARAMS, f"{self.name}: unknown parameter {', '.join(unknown)}")
            given = dict(params)
        else:
            raise RpcError(INVALID_PARAMS, "params must be a list or an object")
        bound: dict[str, Any] = {}
        for p in self.params:
            value = given.get(p.name)
            if value is None:
                if p.required:
                    raise RpcError(INVALID_PARAMS, f"{self.name}: missing parameter '{p.name}'")
                bound[p.name] = None
                continue
            try:
                bound[p.name] = p.check(p.name, value)
            except ValueError as e:
                raise RpcError(INVALID_PARAMS, f"{self.name}: {e}") from None
        return bound


REQUESTS_SHOWN = 50
_BULKY = frozenset({"tx", "psbt", "recovery"})
"""Fields of a request record that hold a whole transaction, PSBT or DKG transcript."""


def _slim(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict) and depth < 4:
        return {k: _slim(v, depth + 1) for k, v in value.items() if k not in _BULKY}
    return value


async def _requests(service: Any, request_id: str | None, limit: int | None, tx: bool | None) -> Any:
    """The service's request records, the most recent `limit`, without transaction hex unless asked."""
    result = await service.requests(request_id)
    rows = result.get("requests") if isinstance(result, dict) else None
    if not isinstance(rows, list):
        return result
    shown = rows[-(limit or REQUESTS_SHOWN) :]
    out = {**result, "requests": shown if tx else [_slim(r) for r in shown]}
    if len(rows) > len(shown):
        out["omitted"] = len(rows) - len(shown)
    return out


def _commands() -> dict[str, Command]:
    cmds = [
        Command(
            "frost-status",
            "Members, liveness, epoch, threshold and group key of this federation; the chain source, the "
            "federation's coins, how far the members' ledgers agree, and the work in progress.",
            (),
            lambda s: s.status(),
        ),
        Command(
            "frost-newaddr",
            "Next Taproot address of the federation (BIP86 key path).",
            (),
            lambda s: s.newaddr(),
        ),
        Command(
            "frost-descriptor",
            "The federation's tr(...) descriptor, for a watch-only wallet.",
            (),
            lambda s: s.descriptor(),
        ),
        Command(
            "frost-payout",
            "Build a payout to [{address, sats}], have every member check it, FROST-sign and broadcast.",
            (
                Param("outputs", check.outputs, doc='JSON list of {"address": ..., "sats": ...}'),
                Param(
                    "feerate",
                    check.feerate,
                    required=False,
                    doc="sat/vB (default: the chain source's estimate within the policy's bounds; 2 without one)",
                ),
            ),
            lambda s, outputs, feerate: s.payout(outputs, feerate),
        ),
        Command(
            "frost-bumpfee",
            "Replace a signed payout that has not confirmed by one paying a higher fee (BIP 125): the same "
            "coins and payees, the extra fee taken from the change; every member checks it against its own "
            "record of the payout.",
            (
                Param("id", check.text, doc="the id of the payout request (frost-payout's 'id', or an earlier bump's)"),
                Param(
                    "feerate",
                    check.feerate,
                    required=False,
                    doc="sat/vB (default: the chain source's estimate, at least the least BIP 125 increment)",
                ),
            ),
            lambda s, id, feerate: s.bumpfee(id, feerate),
        ),
        Command(
            "frost-sign",
            "Have the federation check and sign its inputs of a PSBT; returns the PSBT.",
            (Param("psbt", check.psbt, doc="base64 PSBT whose federation inputs carry BIP 371 derivations"),),
            lambda s, psbt: s.sign(psbt),
        ),
        Command(
            "frost-members",
            "The members of the current epoch with their liveness.",
            (),
            lambda s: s.members(),
        ),
        Command(
            "frost-requests",
            "Signing requests with their status and outcome, oldest first (one, given its id); transactions "
            "and PSBTs only with tx=true.",
            (
                Param("id", check.text, required=False, doc="a request id; the most recent requests when omitted"),
                Param(
                    "limit",
                    check.whole(1, 100_000),
                    required=False,
                    doc=f"at most this many (default {REQUESTS_SHOWN})",
                ),
                Param(
                    "tx", check.flag, required=False, doc="true: with each transaction's hex and PSBT (default false)"
                ),
            ),
            lambda s, id, limit, tx: _requests(s, id, limit, tx),
        ),
        Command(
            "frost-join",
            "Propose a new member: a DKG among the new list, then a bond transaction signed by t members.",
            (
                Param("id", check.member_id, doc="the joiner's member id (its frost-status 'me')"),
                Param("address", check.hostport, doc="the joiner's host:port (<node id>@host:port in Core Lightning)"),
                Param(
                    "bond_sats",
                    check.whole(1, 21 * 10**14),
                    required=False,
                    doc="bond in sats (default: min_bond_sats)",
                ),
                Param(
                    "lock_blocks",
                    check.whole(1, 500_000),
                    required=False,
                    doc="blocks the bond stays locked (default: min_bond_blocks)",
                ),
            ),
            lambda s, id, address, bond_sats, lock_blocks: s.join(id, address, bond_sats, lock_blocks),
        ),
        Command(
            "frost-leave",
            "Leave the federation: a transition to the members without this one.",
            (),
            lambda s: s.leave(),
        ),
        Command(
            "frost-expel",
            "Propose removing a member (e.g. one long offline): a transition without it, signed by t.",
            (Param("member", check.member_id, doc="the member id to remove"),),
            lambda s, member: s.expel(member),
        ),
        Command(
            "frost-admit",
            "Admit a joiner at this member: it takes part in that join only, with at least this bond.",
            (
                Param("id", check.member_id, doc="the joiner's member id"),
                Param(
                    "min_bond_sats",
                    check.whole(1, 21 * 10**14),
                    required=False,
                    doc="the smallest bond accepted for this joiner; [membership] min_bond_sats when omitted",
                ),
            ),
            lambda s, id, min_bond_sats: s.admit(id, min_bond_sats),
        ),
        Command(
            "frost-approve-expel",
            "Approve expelling a member at this member (without it, only one this member saw offline long enough).",
            (Param("member", check.member_id, doc="the member id to expel"),),
            lambda s, member: s.approve_expel(member),
        ),
        Command(
            "frost-revoke",
            "Withdraw this member's admission of a joiner or approval of an expulsion.",
            (Param("member", check.member_id, doc="the joiner or member the admission or approval named"),),
            lambda s, member: s.revoke(member),
        ),
        Command(
            "frost-abort-change",
            "Stop taking part in the membership change in progress, at this member only (one whose transition "
            "never confirms holds every later change up): its transition is refused from now on, the new key's "
            "share is kept aside.",
            (Param("reason", check.text, required=False, doc="why, kept in this member's record of the change"),),
            lambda s, reason: s.abort_change(reason),
        ),
        Command(
            "frost-epochs",
            "The federation's epochs: members, threshold, key, status, transition.",
            (),
            lambda s: s.epochs(),
        ),
        Command(
            "frost-bond-claim",
            "Spend this member's matured fidelity bond to an address (only after its lock time).",
            (Param("address", check.address, doc="the Bitcoin address the bond goes to"),),
            lambda s, address: s.bond_claim(address),
        ),
        Command(
            "frost-ledger-credit",
            "Credit a miner in this member's ledger (what the pool's share accounting calls). A retried call "
            "with the same key credits once.",
            (
                Param("address", check.address, doc="the miner's Bitcoin address"),
                Param("sats", check.whole(1, 21 * 10**14), doc="satoshis the pool owes it for this credit"),
                Param("key", check.key, doc="idempotency key, unique per credit (e.g. the share window's id)"),
            ),
            lambda s, address, sats, key: s.ledger_credit(address, sats, key),
        ),
        Command(
            "frost-ledger",
            "What this member's ledger says the pool owes: credited, paid, reserved and available per miner.",
            (Param("address", check.address, required=False, doc="one miner's address; every miner when omitted"),),
            lambda s, address: s.ledger(address),
        ),
        Command(
            "frost-ledger-history",
            "The ledger's history: each keyed credit and each confirmed payout, oldest first.",
            (Param("address", check.address, required=False, doc="one miner's address; every miner when omitted"),),
            lambda s, address: s.ledger_history(address),
        ),
    ]
    return {c.name: c for c in cmds}


COMMANDS: dict[str, Command] = _commands()


async def dispatch(service: Any, name: str, params: list[Any] | dict[str, Any] | None) -> Any:
    """Run one command; anything but an RpcError becomes an internal error with a plain message."""
    command = COMMANDS.get(name)
    if command is None:
        raise RpcError(METHOD_NOT_FOUND, f"Unknown command '{name}'")
    bound = command.bind(params)
    try:
        return await command.call(service, **bound)
    except RpcError:
        raise
    except Exception as e:  # the caller gets a message, the node keeps running
        raise RpcError(INTERNAL_ERROR, f"{name} failed: {type(e).__name__}: {e}") from e

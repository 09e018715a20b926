"""Federation protocol messages, the protocol's reference: every kind a member sends (`Kind`), and for
each its typed form (a frozen dataclass with `encode()` and `decode(Message)`).

On the wire a message is canonical JSON (sorted keys, byte strings in hex), versioned. Every field is
type- and length-checked in the kind's `decode`, so a malformed or hostile message becomes a
`MessageError` naming the problem and never reaches protocol logic half-parsed. Checks that need the
receiver's state (is this the request I signed? does the count match my tasks?) belong to the
receiver's state machine, not here.

The signing request itself is `signing_request.SigningRequest` (it carries a transaction and its
judgement); the membership kinds are the types of `membership` (`Proposal`, `BondOffer`) until they
move here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

VERSION = 1
MAX_MESSAGE = 4 * 1024 * 1024
MAX_KIND = 32
_HEX = frozenset("0123456789abcdefABCDEF")


class MessageError(Exception):
    """A received message is malformed; the sender is at fault."""


class Kind(StrEnum):
    """Every message kind, by its wire name (a `StrEnum`: a kind is the string it sends)."""

    # signing (roast_signing): coordinator -> all, signer -> coordinator, coordinator -> a session's signers
    SIGN_REQUEST = "sign_request"  # the request (signing_request.SigningRequest)
    SIGN_READY = "sign_ready"  # the signer accepts: its first presignature
    SIGN_REJECT = "sign_reject"  # the signer refuses, with its reason
    SIGN_SESSION = "sign_session"  # a ROAST session: its signers and their presignatures
    SIGN_SHARE = "sign_share"  # a partial signature per input and the next presignature
    SIGN_DONE = "sign_done"  # the outcome, coordinator -> all
    # the epoch's DKG (dkg_driver)
    DKG_HELLO = "dkg_hello"  # "I run attempt N of epoch E": everyone moves to the highest attempt
    EPOCH_RECOVERY = "epoch_recovery"  # a finished DKG's public recovery data, for a member that missed the end
    # liveness and addresses (node)
    HEARTBEAT = "heartbeat"  # the sender is up; its epoch and the transaction that opened it
    ADDRESS = "address"  # an address index is taken
    # membership changes (membership): proposer -> members, a member -> proposer, proposer -> joiner
    CHANGE_PROPOSAL = "change_proposal"  # the change (transition.Proposal): who joins or leaves, the new list
    CHANGE_ACK = "change_ack"  # a member's answer: it takes part, or refuses with its reason
    CHANGE_KEY = "change_key"  # the new key's public recovery data, from a member of the new list
    CHANGE_DONE = "change_done"  # the transition's txid; activation waits for each member's own chain
    CHANGE_ABORT = "change_abort"  # the proposer drops the change
    BOND_REQUEST = "bond_request"  # the proposer asks the joiner for its bond coin
    BOND_OFFER = "bond_offer"
    BOND_SIGN = "bond_sign"
    BOND_SIGNED = "bond_signed"


def encode(kind: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, "type": str(kind), "body": body}, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Message:
    kind: str
    body: dict[str, Any]

    def get(self, key: str, typ: type | tuple[type, ...]) -> Any:
        if key not in self.body:
            raise MessageError(f"{self.kind}: missing field '{key}'")
        value = self.body[key]
        if (isinstance(value, bool) and typ is not bool) or not isinstance(value, typ):
            raise MessageError(f"{self.kind}: field '{key}' has the wrong type")
        return value

    def text(self, key: str, max_len: int = 256) -> str:
        value = self.get(key, str)
        if len(value) > max_len:
            raise MessageError(f"{self.kind}: field '{key}' is too long")
        try:
            value.encode()  # JSON may carry lone surrogates, which SQLite and UTF-8 logs cannot take
        except UnicodeEncodeError:
            raise MessageError(f"{self.kind}: field '{key}' is not valid Unicode") from None
        return value

    def integer(self, key: str, lo: int = 0, hi: int = 2**63) -> int:
        value = self.get(key, int)
        if not lo <= value <= hi:
            raise MessageError(f"{self.kind}: field '{key}' is out of range")
        return value

    def hexbytes(self, key: str, length: int | None = None, max_len: int = MAX_MESSAGE) -> bytes:
        return _hex(self.kind, key, self.get(key, str), length, max_len)

    def hexlist(self, key: str, length: int | None = None, max_items: int = 10_000) -> list[bytes]:
        items = self.get(key, list)
        if len(items) > max_items:
            raise MessageError(f"{self.kind}: field '{key}' has too many items")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise MessageError(f"{self.kind}: {key}[{i}] has the wrong type")
            out.append(_hex(self.kind, f"{key}[{i}]", item, length, MAX_MESSAGE))
        return out


def _hex(kind: str, key: str, value: str, length: int | None, max_len: int) -> bytes:
    # bytes.fromhex also skips whitespace; a canonical message has none.
    if len(value) % 2 or not _HEX.issuperset(value):
        raise MessageError(f"{kind}: field '{key}' is not hex")
    raw = bytes.fromhex(value)
    if length is not None and len(raw) != length:
        raise MessageError(f"{kind}: field '{key}' must be {length} bytes")
    if len(raw) > max_len:
        raise MessageError(f"{kind}: field '{key}' is too long")
    return raw


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes) -> Message:
    if len(data) > MAX_MESSAGE:
        raise MessageError("message too large")
    try:
        obj = json.loads(data, parse_constant=_not_json)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser
        raise MessageError("message is not JSON") from None
    if not isinstance(obj, dict) or set(obj) != {"v", "type", "body"}:
        raise MessageError("message must be an object with v, type and body")
    v = obj["v"]
    if type(v) is not int or v != VERSION:  # neither true nor 1.0
        raise MessageError(f"unknown message version {str(v)[:20]!r}")
    kind = obj["type"]
    if not isinstance(kind, str) or not isinstance(obj["body"], dict):
        raise MessageError("message type or body has the wrong type")
    if not 0 < len(kind) <= MAX_KIND or not kind.isascii() or not kind.isprintable():
        raise MessageError("message type must be a short printable name")
    return Message(kind, obj["body"])


# -- typed messages --------------------------------------------------------------------------------

MAX_TASKS = 10_000

NONCE_BYTES = 66
"""A BIP 445 pubnonce or aggregate nonce: two 33-byte points. A list of them travels as one hex string
of the concatenated values: 66 bytes per task, where a JSON list of hex strings per signer made a
67-signer session request grow past 9 KB."""


def encode_nonces(nonces: Sequence[bytes]) -> str:
    """`nonces` (66 bytes each) as one hex string."""
    if any(len(n) != NONCE_BYTES for n in nonces):
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return b"".join(nonces).hex()


def decode_nonces(msg: Message, key: str, count: int | None = None, max_count: int = 10_000) -> tuple[bytes, ...]:
    """Field `key` of `msg` as 1..`max_count` nonces (exactly `count` if given); MessageError for
    anything else (not hex, another length). Whether each nonce is a pair of points is for the signer
    to check."""
    if count is not None and count < 1:
        raise MessageError(f"{msg.kind}: at least one nonce is expected in '{key}'")
    raw = msg.hexbytes(key, None if count is None else NONCE_BYTES * count, max_len=NONCE_BYTES * max_count)
    if not raw or len(raw) % NONCE_BYTES:
        raise MessageError(f"{msg.kind}: field '{key}' must hold whole {NONCE_BYTES}-byte nonces")
    return tuple(raw[k * NONCE_BYTES : (k + 1) * NONCE_BYTES] for k in range(len(raw) // NONCE_BYTES))

"""The most signing tasks (federation inputs) a message may carry: more than a standard transaction
(400,000 bytes) can hold. The exact count is the receiver's check, against its own tasks."""
MAX_REASON = 1000
TXID_HEX = 64


class Typed:
    """The base of every typed message: its `KIND`, its body as a dict, and the strict reading back.

    Subclasses are frozen dataclasses; `decode` does every field check, so a handler receives either a
    whole, well-typed message or a `MessageError`."""

    KIND: ClassVar[Kind]

    def body(self) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self) -> bytes:
        return encode(self.KIND, self.body())

    @classmethod
    def decode(cls, msg: Message) -> Self:
        raise NotImplementedError


def _request_id(msg: Message) -> str:
    return msg.text("id", 64)


def _optional_int(msg: Message, key: str, lo: int = 0, hi: int = 2**63) -> int | None:
    return msg.integer(key, lo, hi) if key in msg.body else None


@dataclass(frozen=True)
class SignReady(Typed):
    KIND: ClassVar[Kind] = Kind.SIGN_READY
    id: str
    pubnonces: tuple[bytes, ...]  # 66 bytes each, one per task

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "pubnonces": [p.hex() for p in self.pubnonces]}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(_request_id(msg), tuple(msg.hexlist("pubnonces", 66, max_items=MAX_TASKS)))


@dataclass(frozen=True)
class SignReject(Typed):
    KIND: ClassVar[Kind] = Kind.SIGN_REJECT
    id: str
    reason: str

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "reason": self.reason}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(_request_id(msg), msg.text("reason", MAX_REASON))


MAX_SESSION_ID = 2**31


@dataclass(frozen=True)
class SignSession(Typed):
    """A session: the signer ids and one aggregate nonce per task (66 bytes each, one hex string), all a
    signer needs for BIP 445's Sign (why a signer may take the aggregate from the coordinator:
    `frostfed.frost.roast.SignerSession`). Which ids and how many nonces are right is
    `RoastSigner.check_session`'s judgement."""

    KIND: ClassVar[Kind] = Kind.SIGN_SESSION
    id: str
    sid: int
    signers: tuple[int, ...]
    aggnonces: tuple[bytes, ...]

    def body(self) -> dict[str, Any]:
        nonces = encode_nonces(self.aggnonces)
        return {"id": self.id, "sid": self.sid, "signers": list(self.signers), "aggnonces": nonces}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        rid = _request_id(msg)
        sid = msg.integer("sid", 0, MAX_SESSION_ID)
        signers = msg.get("signers", list)
        if len(signers) > MAX_TASKS or not all(type(i) is int for i in signers):
            raise MessageError(f"{msg.kind}: signer ids must be whole numbers")
        return cls(rid, sid, tuple(signers), decode_nonces(msg, "aggnonces", max_count=MAX_TASKS))


@dataclass(frozen=True)
class SignShare(Typed):
    KIND: ClassVar[Kind] = Kind.SIGN_SHARE
    id: str
    sid: int
    psigs: tuple[bytes, ...]  # 32 bytes each, one per task
    next: tuple[bytes, ...]  # the signer's next presignature

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sid": self.sid,
            "psigs": [p.hex() for p in self.psigs],
            "next": [p.hex() for p in self.next],
        }

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(
            _request_id(msg),
            msg.integer("sid", 0, MAX_SESSION_ID),
            tuple(msg.hexlist("psigs", 32, max_items=MAX_TASKS)),
            tuple(msg.hexlist("next", 66, max_items=MAX_TASKS)),
        )


@dataclass(frozen=True)
class SignDone(Typed):
    """The coordinator's word on how a request ended: it only ends the signer's part (the nonce is
    discarded); no member believes the status beyond that."""

    KIND: ClassVar[Kind] = Kind.SIGN_DONE
    id: str
    status: str
    txid: str  # "" when nothing was signed

    def body(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "txid": self.txid}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(_request_id(msg), msg.text("status", 32), msg.text("txid", TXID_HEX))


@dataclass(frozen=True)
class DkgHello(Typed):
    KIND: ClassVar[Kind] = Kind.DKG_HELLO
    epoch: int
    attempt: int

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "attempt": self.attempt}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(msg.integer("epoch", 0, 2**31), msg.integer("attempt", 1, 2**31))


MAX_RECOVERY = 1 << 20


@dataclass(frozen=True)
class EpochRecovery(Typed):
    KIND: ClassVar[Kind] = Kind.EPOCH_RECOVERY
    epoch: int
    recovery: bytes  # ChillDKG recovery data: public, checked by participant_recover

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "recovery": self.recovery.hex()}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(msg.integer("epoch", 0, 2**31), msg.hexbytes("recovery", max_len=MAX_RECOVERY))


@dataclass(frozen=True)
class Heartbeat(Typed):
    """Sent every few seconds: the receiver counts the sender as online. The epoch and the transaction
    that opened it are only a hint where to look on chain; `ledger` is the sender's ledger digest
    (`federation/health.py` checks its fields), shown to the operator and never a reason to sign."""

    KIND: ClassVar[Kind] = Kind.HEARTBEAT
    t: int
    epoch: int | None = None
    txid: str | None = None
    ledger: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"t": self.t}
        if self.epoch is not None:
            body["epoch"] = self.epoch
        if self.txid is not None:
            body["txid"] = self.txid
        if self.ledger is not None:
            body["ledger"] = self.ledger
        return body

    @classmethod
    def decode(cls, msg: Message) -> Self:
        txid = msg.hexbytes("txid", 32).hex() if "txid" in msg.body else None
        ledger = msg.get("ledger", dict) if "ledger" in msg.body else None
        return cls(msg.integer("t"), _optional_int(msg, "epoch", 0, 2**31), txid, ledger)


@dataclass(frozen=True)
class Address(Typed):
    KIND: ClassVar[Kind] = Kind.ADDRESS
    epoch: int
    index: int  # a receive index, m/0/index

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(msg.integer("epoch"), msg.integer("index", 0, 2**31 - 1))


# -- membership kinds ------------------------------------------------------------------------------
# The typed forms of the membership messages; the membership machine (`membership/`) reads and sends
# them. The proposal itself is `transition.Proposal` and the bond offer `transition.BondOffer` (they
# carry the change's rules).

MAX_EPOCH = 2**31
MAX_TX = 400_000
MAX_REASON_CHANGE = 500


@dataclass(frozen=True)
class ChangeAck(Typed):
    """A member's answer to a proposal: it takes part, or refuses and says why."""

    KIND: ClassVar[Kind] = Kind.CHANGE_ACK
    epoch: int
    ok: bool
    reason: str = ""

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "ok": self.ok, "reason": self.reason[:MAX_REASON_CHANGE]}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(msg.integer("epoch", 0, MAX_EPOCH), msg.get("ok", bool), msg.text("reason", MAX_REASON_CHANGE))


@dataclass(frozen=True)
class ChangeKey(Typed):
    """A new member's report to the proposer: the new epoch's DKG ended, with this recovery data."""

    KIND: ClassVar[Kind] = Kind.CHANGE_KEY
    epoch: int
    recovery: bytes

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "recovery": self.recovery.hex()}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(msg.integer("epoch", 0, MAX_EPOCH), msg.hexbytes("recovery", max_len=MAX_RECOVERY))


@dataclass(frozen=True)
class ChangeDone(Typed):
    """The proposer's word that the transition is broadcast: only a hint where to look on chain."""

    KIND: ClassVar[Kind] = Kind.CHANGE_DONE
    epoch: int
    txid: str

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "txid": self.txid}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(msg.integer("epoch", 0, MAX_EPOCH), msg.hexbytes("txid", 32).hex())


@dataclass(frozen=True)
class ChangeAbort(Typed):
    """The proposer drops its change (only its own abort of its own proposal counts)."""

    KIND: ClassVar[Kind] = Kind.CHANGE_ABORT
    epoch: int
    nonce: str
    reason: str

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "nonce": self.nonce, "reason": self.reason[:MAX_REASON_CHANGE]}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(
            msg.integer("epoch", 0, MAX_EPOCH), msg.text("nonce", 32), msg.text("reason", MAX_REASON_CHANGE)
        )


@dataclass(frozen=True)
class BondRequest(Typed):
    """The proposer asks the joiner for its bond coin."""

    KIND: ClassVar[Kind] = Kind.BOND_REQUEST
    epoch: int

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(msg.integer("epoch", 0, MAX_EPOCH))


@dataclass(frozen=True)
class Prevout:
    txid: str
    vout: int
    script_pubkey: bytes
    amount: int


@dataclass(frozen=True)
class BondSign(Typed):
    """The proposer asks the joiner to sign its bond input of the transition (the joiner's wallet
    checks the transaction against the agreed bond and change; the prevouts let it compute sighashes)."""

    KIND: ClassVar[Kind] = Kind.BOND_SIGN
    epoch: int
    tx: bytes
    prevouts: tuple[Prevout, ...]

    def body(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "tx": self.tx.hex(),
            "prevouts": [
                {"txid": p.txid, "vout": p.vout, "scriptPubKey": p.script_pubkey.hex(), "amount": p.amount}
                for p in self.prevouts
            ],
        }

    @classmethod
    def decode(cls, msg: Message) -> Self:
        prevouts = []
        for i, raw in enumerate(msg.get("prevouts", list)):
            if not isinstance(raw, dict):
                raise MessageError(f"{msg.kind}: prevouts[{i}] has the wrong type")
            po = Message(msg.kind, raw)
            prevouts.append(
                Prevout(
                    po.hexbytes("txid", 32).hex(),
                    po.integer("vout", 0, 2**32 - 1),
                    po.hexbytes("scriptPubKey", max_len=10_000),
                    po.integer("amount", 0, 21_000_000 * 10**8),
                )
            )
        return cls(msg.integer("epoch", 0, MAX_EPOCH), msg.hexbytes("tx", max_len=MAX_TX), tuple(prevouts))


@dataclass(frozen=True)
class BondSigned(Typed):
    """The joiner's signed bond input: its scriptSig and witness."""

    KIND: ClassVar[Kind] = Kind.BOND_SIGNED
    epoch: int
    script_sig: bytes
    witness: tuple[bytes, ...]

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "script_sig": self.script_sig.hex(), "witness": [w.hex() for w in self.witness]}

    @classmethod
    def decode(cls, msg: Message) -> Self:
        return cls(
            msg.integer("epoch", 0, MAX_EPOCH),
            msg.hexbytes("script_sig", max_len=1650),
            tuple(msg.hexlist("witness", max_items=20)),
        )

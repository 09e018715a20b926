"""Membership changes: an epoch transition moves the federation's coins and its membership together.

A join, a leave or an expulsion is a proposal for epoch e+1 with a new member list. The members of
the new list run ChillDKG among themselves; then one transaction, FROST-signed by t members of epoch
e, spends every coin of epoch e to the new epoch's key. On a join the joiner adds its own input and
receives a fidelity bond output it can only spend after a lock time. If fewer than t members of
epoch e approve, nothing is signed and epoch e goes on untouched; once the transaction has the
configured confirmations, epoch e+1 takes over and epoch e's key share is deleted.

This module holds the pure parts: the proposal and its validation, the transaction and its checks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, b2lx, lx
from bitcoin.core.script import CScript

from frostfed.bitcoin.bond import bond_script
from frostfed.bitcoin.chain import ChainSource, Utxo
from frostfed.bitcoin.chain_checks import COINBASE_MATURITY
from frostfed.bitcoin.rejection import PolicyRejection
from frostfed.bitcoin.standardness import Standardness, check_standard, dust_limit, keypath_vsize
from frostfed.federation.config import MembershipSettings, default_threshold
from frostfed.federation.epoch_keys import RECEIVE, EpochKeys
from frostfed.federation.messages import Message, MessageError
from frostfed.frost import chilldkg
from frostfed.net.addresses import ValidationError, member_id, peer_address

KINDS = ("join", "leave", "expel")
TRANSITION_PATH = (RECEIVE, 0)
"""The new epoch receives the old epoch's coins at its first receive address."""


class ProposalRefused(Exception):
    """A proposal this member will not take part in; the message says why."""


@dataclass
class Proposal:
    epoch: int  # the new epoch
    kind: str
    members: list[bytes]
    threshold: int
    addresses: dict[bytes, str]  # id -> "host:port" of every member of the new list
    proposer: bytes
    subject: bytes  # the joiner, the leaver or the expelled member
    bond_sats: int = 0
    bond_locktime: int = 0
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    """Tells two proposals for the same epoch apart (a retry after a failed one)."""

    def to_body(self) -> dict[str, Any]:
        return {
            "nonce": self.nonce,
            "epoch": self.epoch,
            "kind": self.kind,
            "members": [m.hex() for m in self.members],
            "threshold": self.threshold,
            "addresses": {k.hex(): v for k, v in self.addresses.items()},
            "proposer": self.proposer.hex(),
            "subject": self.subject.hex(),
            "bond_sats": self.bond_sats,
            "bond_locktime": self.bond_locktime,
        }

    @classmethod
    def from_message(cls, msg: Message) -> Proposal:
        kind = msg.text("kind", 8)
        if kind not in KINDS:
            raise MessageError(f"unknown membership change {kind!r}")
        members = msg.hexlist("members", 33, max_items=1000)
        raw_addr = msg.get("addresses", dict)
        addresses = {}
        for k, v in raw_addr.items():
            try:
                key = member_id(k, "change_proposal: an address key")
                peer_address(v, "change_proposal: an address")
            except ValidationError as e:
                raise MessageError(str(e)) from None
            addresses[key] = v
        return cls(
            epoch=msg.integer("epoch", 1, 2**31),
            kind=kind,
            members=members,
            threshold=msg.integer("threshold", 1, 1000),
            addresses=addresses,
            proposer=msg.hexbytes("proposer", 33),
            subject=msg.hexbytes("subject", 33),
            bond_sats=msg.integer("bond_sats", 0, 21 * 10**14),
            bond_locktime=msg.integer("bond_locktime", 0, 499_999_999),
            nonce=msg.text("nonce", 32),
        )


def make_proposal(
    keys: EpochKeys,
    directory: dict[bytes, str],
    kind: str,
    subject: bytes,
    proposer: bytes,
    settings: MembershipSettings,
    tip_height: int,
    subject_address: str | None = None,
    bond_sats: int | None = None,
    bond_blocks: int | None = None,
) -> Proposal:
    """The proposal for `kind` of `subject`; raises ProposalRefused with a reason a person can act on."""
    old = list(keys.members)
    if kind == "join":
        if subject in old:
            raise ProposalRefused(f"{subject.hex()} is already a member")
        if not subject_address:
            raise ProposalRefused("a join needs the joiner's host:port")
        new = [*old, subject]
        directory = {**directory, subject: subject_address}
    elif kind in ("leave", "expel"):
        if subject not in old:
            raise ProposalRefused(f"{subject.hex()} is not a member of epoch {keys.epoch}")
        new = [m for m in old if m != subject]
    else:
        raise ProposalRefused(f"unknown membership change {kind!r}")
    proposal = Proposal(
        epoch=keys.epoch + 1,
        kind=kind,
        members=new,
        threshold=default_threshold(len(new)),
        addresses={m: directory[m] for m in new if m in directory},
        proposer=proposer,
        subject=subject,
        bond_sats=bond_sats if bond_sats is not None else settings.min_bond_sats,
        bond_locktime=tip_height + (bond_blocks if bond_blocks is not None else settings.min_bond_blocks)
        if kind == "join"
        else 0,
    )
    check_proposal(proposal, keys, settings, tip_height)
    return proposal


def check_proposal(p: Proposal, keys: EpochKeys, settings: MembershipSettings, tip_height: int) -> None:
    """What every member of the current epoch checks before it takes part in a change."""
    old = keys.members
    if p.epoch != keys.epoch + 1:
        raise ProposalRefused(f"proposal is for epoch {p.epoch}, the next epoch is {keys.epoch + 1}")
    if p.proposer not in old:
        raise ProposalRefused("the proposer is not a member of the current epoch")
    if len(set(p.members)) != len(p.members):
        raise ProposalRefused("the new member list repeats a member")
    if p.kind == "join":
        if p.subject in old or p.members != [*old, p.subject]:
            raise ProposalRefused("a join adds exactly the joiner to the current members")
        if len(p.members) > settings.max_members:
            raise ProposalRefused(f"the federation is capped at {settings.max_members} members")
        if p.bond_sats < settings.min_bond_sats:
            raise ProposalRefused(f"bond of {p.bond_sats} sats is below the minimum of {settings.min_bond_sats}")
        if p.bond_locktime < tip_height + settings.min_bond_blocks - 6:
            raise ProposalRefused(
                f"bond lock time {p.bond_locktime} is less than {settings.min_bond_blocks} blocks ahead "
                f"of the tip ({tip_height})"
            )
        if p.subject not in p.addresses:
            raise ProposalRefused("the joiner's address is missing")
    else:
        if p.subject not in old or p.members != [m for m in old if m != p.subject]:
            raise ProposalRefused(f"a {p.kind} removes exactly one current member")
        if p.kind == "leave" and p.proposer != p.subject:
            raise ProposalRefused("only a member itself can propose its leave (others: expel)")
        if len(p.members) < keys.threshold:
            raise ProposalRefused(
                f"{len(p.members)} members would remain, fewer than the threshold t = {keys.threshold}: "
                "the federation could not sign the transition"
            )
        if len(p.members) < 2:
            raise ProposalRefused("a federation needs at least 2 members")
    if p.threshold != default_threshold(len(p.members)):
        raise ProposalRefused(f"the new threshold must be {default_threshold(len(p.members))}")
    missing = [m.hex()[:16] for m in p.members if m not in p.addresses]
    if missing:
        raise ProposalRefused(f"no address for members {missing}")


@dataclass
class BondOffer:
    """The joiner's side of a join transaction."""

    outpoint: tuple[str, int]
    amount: int
    bond_key: bytes  # x-only key that may spend the bond after the lock time
    change_script: bytes

    def to_body(self) -> dict[str, Any]:
        return {
            "txid": self.outpoint[0],
            "vout": self.outpoint[1],
            "amount": self.amount,
            "bond_key": self.bond_key.hex(),
            "change_script": self.change_script.hex(),
        }

    @classmethod
    def from_message(cls, msg: Message) -> BondOffer:
        txid = msg.hexbytes("txid", 32).hex()
        return cls(
            (txid, msg.integer("vout", 0, 100_000)),
            msg.integer("amount", 1, 21 * 10**14),
            msg.hexbytes("bond_key", 32),
            msg.hexbytes("change_script", max_len=80),
        )


JOINER_VBYTES = 58 + 43 + 43
"""A joiner's share of the transaction size: a P2WPKH input, the bond output, a change output."""


@dataclass
class TransitionPlan:
    tx: CTransaction
    fed_inputs: list[tuple[int, tuple[int, int]]] = field(default_factory=list)  # (input index, path)
    bond_input: int | None = None


def build_transition_tx(
    coins: list[tuple[Utxo, tuple[int, int]]],
    new_keys_script: bytes,
    fee_rate: float,
    proposal: Proposal,
    offer: BondOffer | None,
) -> TransitionPlan:
    """Every coin of the old epoch to the new key; on a join, the joiner's input, bond and change.
    The federation pays for its part of the size, the joiner for its own."""
    if not coins:
        raise ProposalRefused("the federation has no confirmed coins to move")
    vin = [CTxIn(COutPoint(lx(u.txid), u.vout), nSequence=0xFFFFFFFD) for u, _ in coins]
    fed_in = sum(u.amount_sats for u, _ in coins)
    vout = [CTxOut(0, CScript(new_keys_script))]
    bond_input = None
    if offer is not None:
        joiner_fee = int(JOINER_VBYTES * fee_rate) + 1
        change = offer.amount - proposal.bond_sats - joiner_fee
        if change < 0:
            raise ProposalRefused(f"the joiner's input of {offer.amount} sats cannot pay the bond and its fee")
        bond_input = len(vin)
        vin.append(CTxIn(COutPoint(lx(offer.outpoint[0]), offer.outpoint[1]), nSequence=0xFFFFFFFD))
        vout.append(CTxOut(proposal.bond_sats, CScript(bond_script(offer.bond_key, proposal.bond_locktime))))
        if change >= dust_limit(offer.change_script):
            vout.append(CTxOut(change, CScript(offer.change_script)))
    fed_vsize = keypath_vsize(CTransaction(vin[: len(coins)], vout[:1], 0, 2))
    fed_fee = int(fed_vsize * fee_rate) + 1
    if fed_in - fed_fee < 330:
        raise ProposalRefused("the federation's coins do not cover the transition fee")
    vout[0] = CTxOut(fed_in - fed_fee, CScript(new_keys_script))
    tx = CTransaction(vin, vout, 0, 2)
    return TransitionPlan(tx, [(i, p) for i, (_, p) in enumerate(coins)], bond_input)


def verify_new_epoch_key(recovery: bytes, proposal: Proposal, known_hostkeys: dict[bytes, bytes]) -> bytes:
    """The new epoch's threshold key, trusted only through the certificate in its recovery data: all
    members of the new list signed the transcript with their host keys. Host keys of continuing
    members must be the ones this member knows; a joiner's is its own announcement."""
    try:
        out, params = chilldkg.coordinator_recover(recovery)
    except Exception as e:
        raise PolicyRejection("bad_epoch_key", f"the new epoch's recovery data does not verify: {e}") from None
    if params.t != proposal.threshold or len(params.hostpubkeys) != len(proposal.members):
        raise PolicyRejection("bad_epoch_key", "the new epoch's DKG was not run for the proposed member list")
    for member, hostkey in zip(proposal.members, params.hostpubkeys, strict=True):
        if member in known_hostkeys and known_hostkeys[member] != hostkey:
            raise PolicyRejection("bad_epoch_key", f"member {member.hex()[:16]} took part with a foreign host key")
    return bytes(out.thresh_pk)


def check_transition_tx(
    tx: CTransaction,
    fed_paths: dict[int, tuple[int, int]],
    old_keys: EpochKeys,
    new_script: bytes,
    proposal: Proposal,
    chain: ChainSource,
    settings: MembershipSettings,
    min_confirmations: int,
    bond_key: bytes | None,
    standardness: Standardness | None = None,
    min_feerate: float = 1.0,
) -> list[CTxOut]:
    """The checks a member of the old epoch runs on a transition before it signs; returns the spent
    outputs (from the chain) for the sighashes. A transition is held to the same standardness as a
    payout: one that cannot confirm (a lock time far ahead, a relative lock, a version or an output
    no node relays, a fee below the relay fee) would hold the change open for good."""
    check_standard(tx, chain.tip_height(), standardness or Standardness())
    spent: list[CTxOut] = []
    fed_in = 0
    foreign_in = 0
    foreign = [i for i in range(len(tx.vin)) if i not in fed_paths]
    if proposal.kind != "join" and foreign:
        raise PolicyRejection("foreign_input", "only a join may spend an input that is not the federation's")
    if len(foreign) > 1:
        raise PolicyRejection("foreign_input", "a join carries exactly one input of the joiner")
    seen = set()
    for i, txin in enumerate(tx.vin):
        outpoint = (b2lx(txin.prevout.hash), txin.prevout.n)
        if outpoint in seen:
            raise PolicyRejection("duplicate_input", f"input {i} is spent twice")
        seen.add(outpoint)
        utxo = chain.get_utxo(*outpoint)
        if utxo is None:
            raise PolicyRejection("input_spent", f"input {i} ({outpoint[0]}:{outpoint[1]}) is spent or unknown")
        spent.append(CTxOut(utxo.amount_sats, CScript(utxo.script_pubkey)))
        if i in fed_paths:
            if utxo.script_pubkey != old_keys.script(fed_paths[i]):
                raise PolicyRejection("input_not_owned", f"input {i} is not the federation key it claims")
            need = COINBASE_MATURITY if utxo.coinbase else min_confirmations
            if utxo.confirmations < need:
                raise PolicyRejection("input_unconfirmed", f"input {i} has {utxo.confirmations} confirmations")
            fed_in += utxo.amount_sats
        else:
            foreign_in += utxo.amount_sats
    if not tx.vout or bytes(tx.vout[0].scriptPubKey) != new_script:
        raise PolicyRejection("bad_transition_output", "output 0 does not pay the new epoch's key")
    fee_from_federation = fed_in - tx.vout[0].nValue
    if fee_from_federation < 0 or fee_from_federation > settings.max_transition_fee_sats:
        raise PolicyRejection(
            "fee_too_high",
            f"the transition takes {fee_from_federation} sats of the federation's funds as fee; "
            f"at most {settings.max_transition_fee_sats} allowed",
        )
    fee = fed_in + foreign_in - sum(o.nValue for o in tx.vout)
    vsize = keypath_vsize(tx)
    if fee < min_feerate * vsize:
        raise PolicyRejection(
            "fee_too_low",
            f"the transition pays {fee} sats for {vsize} vB, below {min_feerate} sat/vB: it would not be relayed",
        )
    rest = list(tx.vout[1:])
    if proposal.kind == "join":
        if bond_key is None or not rest:
            raise PolicyRejection("bad_bond", "a join must create the joiner's bond output")
        expected = bond_script(bond_key, proposal.bond_locktime)
        if bytes(rest[0].scriptPubKey) != expected:
            raise PolicyRejection("bad_bond", "output 1 is not the bond with the proposed lock time")
        if rest[0].nValue < max(proposal.bond_sats, settings.min_bond_sats):
            raise PolicyRejection("bad_bond", f"the bond of {rest[0].nValue} sats is below the minimum")
        if proposal.bond_locktime < chain.tip_height() + settings.min_bond_blocks - 6:
            raise PolicyRejection("bad_bond", "the bond's lock time is too close")
        if sum(o.nValue for o in rest) > foreign_in:
            raise PolicyRejection("bad_bond", "the joiner's outputs exceed the joiner's input")
        if len(rest) > 2:
            raise PolicyRejection("unknown_output", "a join pays only the new key, the bond and the joiner's change")
    elif rest:
        raise PolicyRejection("unknown_output", "a transition pays nothing but the new epoch's key")
    return spent

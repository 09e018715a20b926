"""The attacker's membership commands (registered on its evil-rpc socket when the attacker imports this
module; `member` is its EvilMember):

- `propose`: any proposal (kind, subject, member list, bond, even a forged proposer) to chosen members;
  with `adopt` the attacker takes part itself (its node runs the new list's DKG, collects `change_key`).
- `acks`: the answers (`change_ack`) the attacker received for an epoch.
- `dkg_abort`: propose, wait until every member of the new list holds its share of the new key, then
  abort the change (to chosen members); returns the proposal and the DKG's recovery data.
- `transition`: request signatures for a transition of any proposal to a key from any recovery data,
  from chosen members only (the key need not belong to any change in progress); `only_anchor` moves
  the anchor coin alone, `locktime` / `sequence` / `version` / `fee_rate` make a transaction that
  cannot confirm.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from bitcoin.core import CMutableTransaction, CTransaction

from adversary.evilrpc import command
from frostfed.federation.coins import find_coins
from frostfed.federation.config import default_threshold
from frostfed.federation.dkg_run import chain_code_of
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.membership import effects as fx
from frostfed.federation.membership.transitions import Event
from frostfed.federation.messages import Message
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.transition import TRANSITION_PATH, Proposal, build_transition_tx
from frostfed.frost import chilldkg
from frostfed.net.channel import PeerId

_ACKS: dict[int, dict[str, dict[str, Any]]] = {}


def _peers(member: Any, to: Any) -> list[PeerId]:
    """As the attacker's own commands read `to` ("all", "everyone" or ids). Not imported from
    `adversary.attacker`: that module runs as `__main__`, and importing it again would register its
    commands a second time, bound to a second copy of its classes."""
    if to == "all":
        return [m for m in member.members if m != member.me]
    if to == "everyone":
        return list(member.members)
    return [bytes.fromhex(x) for x in to]


def _record_acks(member: Any) -> None:
    """Keep every `change_ack` the attacker receives, then let its own membership code see it as usual."""
    handlers = member.membership.handlers
    if getattr(handlers["change_ack"], "evil", False):
        return
    original = handlers["change_ack"]

    def on_ack(peer: PeerId, msg: Message) -> Any:
        body = msg.body
        if isinstance(body.get("epoch"), int):
            _ACKS.setdefault(body["epoch"], {})[peer.hex()] = {"ok": body.get("ok"), "reason": body.get("reason")}
        return original(peer, msg)

    on_ack.evil = True  # type: ignore[attr-defined]
    handlers["change_ack"] = on_ack


def _proposal(member: Any, p: dict[str, Any]) -> Proposal:
    keys = member.keys
    assert keys is not None
    kind = p["kind"]
    subject = bytes.fromhex(p["subject"])
    old = list(keys.members)
    if "members" in p:
        members = [bytes.fromhex(m) for m in p["members"]]
    elif kind == "join":
        members = [*old, subject]
    else:
        members = [m for m in old if m != subject]
    directory = {member.me: "127.0.0.1:1", **member.membership.directory}
    if kind == "join":
        directory[subject] = p.get("address", "127.0.0.1:1")
    tip = member.chain.tip_height() if member.chain is not None else 0
    return Proposal(
        epoch=int(p.get("epoch", keys.epoch + 1)),
        kind=kind,
        members=members,
        threshold=int(p.get("threshold", default_threshold(len(members)))),
        addresses={m: directory.get(m, "127.0.0.1:1") for m in members},
        proposer=bytes.fromhex(p["proposer"]) if "proposer" in p else member.me,
        subject=subject,
        bond_sats=int(p.get("bond_sats", 0)),
        bond_locktime=int(p.get("bond_locktime", tip + 1000 if kind == "join" else 0)),
        nonce=p.get("nonce", secrets.token_hex(8)),
    )


@command("propose")
async def _propose(member: Any, p: dict[str, Any]) -> dict[str, Any]:
    _record_acks(member)
    proposal = _proposal(member, p)
    if p.get("adopt"):  # its own membership code takes part as the proposer, without judging, telling no one
        membership = member.membership
        effects = membership.machine._adopt(proposal, time.time(), Event.PROPOSE, None)
        membership._spawn_all(
            membership._apply([e for e in effects if not (isinstance(e, fx.Send) and e.kind == "change_proposal")])
        )
    peers = _peers(member, p.get("to", "all"))
    for peer in peers:
        await member._send(peer, "change_proposal", proposal.to_body())
    return {"proposal": proposal.to_body(), "sent": len(peers)}


@command("acks")
async def _acks(member: Any, p: dict[str, Any]) -> dict[str, Any]:
    return _ACKS.get(int(p["epoch"]), {})


async def propose_through_dkg(member: Any, p: dict[str, Any]) -> tuple[dict[str, Any], Proposal, bytes, bytes]:
    """Propose a change, take part in it, and wait for its DKG: (answer, proposal, group key, recovery)."""
    keys: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()

    async def stop_at_the_key(e: fx.BuildTransition) -> None:  # instead of building the transition
        if not keys.done():
            keys.set_result((e.group_key, e.recovery))

    member.membership._build = stop_at_the_key
    out = await _propose(member, {**p, "adopt": True})
    proposal = Proposal.from_message(Message("change_proposal", out["proposal"]))
    group_key, recovery = await asyncio.wait_for(keys, float(p.get("timeout", 60)))
    return out, proposal, group_key, recovery


def drop_quietly(member: Any, reason: str, forget_key: bool) -> None:
    """Its own membership code drops the change without telling anyone."""
    membership = member.membership
    machine = membership.machine
    rec = machine.current
    if rec is not None:
        membership._spawn_all(membership._apply(machine._drop(rec, Event.FAILED, reason, forget_key, time.time())))


@command("dkg_abort")
async def _dkg_abort(member: Any, p: dict[str, Any]) -> dict[str, Any]:
    out, proposal, group_key, recovery = await propose_through_dkg(member, p)
    body = {"epoch": proposal.epoch, "nonce": proposal.nonce, "reason": "aborted by the proposer"}
    for peer in _peers(member, p.get("abort_to", "all")):
        await member._send(peer, "change_abort", body)
    drop_quietly(member, "aborted by the attacker", True)
    return {"proposal": out["proposal"], "group_key": group_key.hex(), "recovery": recovery.hex()}


@command("transition")
async def _transition(member: Any, p: dict[str, Any]) -> dict[str, Any]:
    """Sign a transition of `proposal` to the key of `recovery` (every coin the attacker sees)."""
    keys = member.keys
    assert keys is not None
    proposal = Proposal.from_message(Message("change_proposal", p["proposal"]))
    recovery = bytes.fromhex(p["recovery"])
    out, _ = chilldkg.coordinator_recover(recovery)
    new_keys = EpochKeys(
        proposal.epoch,
        proposal.members,
        proposal.threshold,
        bytes(out.thresh_pk),
        chain_code_of(recovery),
        [],
        keys.network,
    )
    coins = await asyncio.to_thread(find_coins, member.chain_view, member.chain, keys, 1)
    if p.get("only_anchor"):  # move the anchor alone, leaving every other coin at the old key
        anchor = member.chain_view.anchor(keys.epoch).outpoint
        coins = [c for c in coins if (c.utxo.txid, c.utxo.vout) == anchor]
    fee_rate = float(p.get("fee_rate", 2.0))
    plan = build_transition_tx(
        [(c.utxo, c.path) for c in coins], new_keys.script(TRANSITION_PATH), fee_rate, proposal, None
    )
    if any(k in p for k in ("locktime", "sequence", "version")):  # a transaction that cannot confirm
        tx = CMutableTransaction.from_tx(plan.tx)
        tx.nLockTime = int(p.get("locktime", tx.nLockTime))
        tx.nVersion = int(p.get("version", tx.nVersion))
        for txin in tx.vin:
            txin.nSequence = int(p.get("sequence", txin.nSequence))
        plan.tx = CTransaction.from_tx(tx)
    paths: list[tuple[int, int] | None] = [None] * len(plan.tx.vin)
    for i, path in plan.fed_inputs:
        paths[i] = path
    req = SigningRequest(
        p.get("id") or f"evil-transition-{secrets.token_hex(4)}",
        keys.epoch,
        "transition",
        plan.tx,
        tuple(paths),
        {},
        {"proposal": proposal.to_body(), "recovery": recovery.hex(), "bond_key": ""},
    )
    result = await member.signing.evil_sign(
        req,
        _peers(member, p.get("to", "all")),
        bool(p.get("self", True)),
        bool(p.get("broadcast", True)),
        float(p.get("timeout", 30)),
    )
    return {
        **result,
        "id": req.id,
        "new_key": bytes(out.thresh_pk).hex(),
        "inputs": [[c.utxo.txid, c.utxo.vout] for c in coins],
    }

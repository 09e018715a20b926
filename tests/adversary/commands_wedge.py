"""The attacker's wedge (`member` is its EvilMember): it proposes a change, lets the new list's DKG
finish, then names a made-up transaction as the change's transition (`change_done`) and never aborts it,
so the honest members wait for a transaction that never confirms."""

from __future__ import annotations

import secrets
from typing import Any

from adversary.evil_membership import _peers, drop_quietly, propose_through_dkg
from adversary.evilrpc import command


@command("wedge")
async def _wedge(member: Any, p: dict[str, Any]) -> dict[str, Any]:
    out, proposal, group_key, recovery = await propose_through_dkg(member, p)
    txid = p.get("txid") or secrets.token_hex(32)
    for peer in _peers(member, p.get("to", "all")):
        await member._send(peer, "change_done", {"epoch": proposal.epoch, "txid": txid})
    drop_quietly(member, "the attacker keeps the others waiting", False)  # nothing is sent
    return {"proposal": out["proposal"], "group_key": group_key.hex(), "recovery": recovery.hex(), "txid": txid}

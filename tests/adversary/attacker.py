"""A malicious member process: the real daemon (config, Noise, bitcoind, its share from the real
DKG) with its honesty removed.

- As a signer it approves every request: it computes the sighashes from the chain's spent outputs
  and signs, whatever the transaction does.
- As a coordinator it obeys `<data_dir>/evil-rpc` (see `evilrpc`): it sends any raw federation
  message to chosen members, and runs ROAST for any transaction, asking only the members it chose.

Run as `python -m adversary.attacker run --config <file>` (with `tests/` on PYTHONPATH). More
commands go in modules `adversary/commands_<topic>.py` (register them with `evilrpc.command`): the
attacker imports every such module at start, so adding an attack needs no change here."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import importlib
import logging
import pkgutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitcoin.core import CTxOut, b2lx
from bitcoin.core.script import CScript

from adversary.evilrpc import SOCKET_NAME, EvilRpcServer, command
from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, taproot_sighash
from frostfed.bitcoin.taproot import p2tr_address
from frostfed.federation import member_config
from frostfed.federation.coins import find_coins
from frostfed.federation.config import load_config
from frostfed.federation.context import MemberContext
from frostfed.federation.messages import Kind, Message, encode
from frostfed.federation.node import Member
from frostfed.federation.roast_signing import RoastSigning, _Coordination
from frostfed.federation.signing_request import SigningRequest
from frostfed.frost.roast import RoastCoordinator, SigningTask
from frostfed.net.channel import PeerId
from frostfed.plugin import daemon

log = logging.getLogger("adversary")


def chain_tasks(member: Member | MemberContext, req: SigningRequest) -> list[SigningTask]:
    """What to sign for `req`, with no check at all: spent outputs from the chain, sighash DEFAULT."""
    assert member.keys is not None and member.chain is not None
    spent = []
    for i, txin in enumerate(req.tx.vin):
        utxo = member.chain.get_utxo(b2lx(txin.prevout.hash), txin.prevout.n)
        if utxo is None:
            raise ValueError(f"input {i} is not in the UTXO set")
        spent.append(CTxOut(utxo.amount_sats, CScript(utxo.script_pubkey)))
    return [member.keys.task(path, taproot_sighash(req.tx, i, spent, SIGHASH_DEFAULT)) for i, path in req.fed_inputs]


@dataclass
class EvilRun:
    """A request the attacker coordinates: whom it asked and what they answered."""

    targets: set[PeerId]
    broadcast: bool
    hold: bool = False  # collect presignatures only; the test crafts the sessions itself
    ready: set[PeerId] = field(default_factory=set)
    presignatures: dict[PeerId, list[str]] = field(default_factory=dict)
    shares: set[PeerId] = field(default_factory=set)


class EvilSigning(RoastSigning):
    def __init__(self, member: Member) -> None:
        super().__init__(member.ctx, member.signing.judges, member.signing.catch_up)
        self.member = member
        self.runs: dict[str, EvilRun] = {}

    async def _check_request(self, req: SigningRequest) -> str | None:
        if self.ctx.keys is None or self.ctx.secshare is None:
            return "no active epoch"
        try:
            self._judged[req.id] = await asyncio.to_thread(chain_tasks, self.ctx, req)
        except Exception as e:
            return f"attacker cannot compute the sighashes: {e}"
        return None

    def _on_sign_ready(self, peer: PeerId, msg: Message) -> None:
        run = self.runs.get(msg.body.get("id", ""))
        if run is not None:
            run.ready.add(peer)
            run.presignatures[peer] = list(msg.body.get("pubnonces", []))
            if run.hold:
                found = self._coordination_for(peer, str(msg.body.get("id", "")))
                if found is not None:
                    found[0].answered.add(found[1])
                return
        super()._on_sign_ready(peer, msg)

    def _on_sign_share(self, peer: PeerId, msg: Message) -> None:
        run = self.runs.get(msg.body.get("id", ""))
        if run is not None:
            run.shares.add(peer)
        super()._on_sign_share(peer, msg)

    async def _finish(self, coord: _Coordination) -> None:
        run = self.runs.get(coord.request.id)
        if run is not None:  # broadcast only when asked to (the base class does it for payouts)
            coord.request = dataclasses.replace(coord.request, kind="payout" if run.broadcast else "psbt")
        await super()._finish(coord)

    async def evil_sign(
        self,
        req: SigningRequest,
        targets: list[PeerId],
        include_self: bool,
        broadcast: bool,
        timeout: float,
        hold: bool = False,
    ) -> dict[str, Any]:
        member = self.member
        keys = member.keys
        assert keys is not None
        tasks = await asyncio.to_thread(chain_tasks, member, req)
        loop = asyncio.get_running_loop()
        coord = _Coordination(req, RoastCoordinator(keys.roast_key, tasks), tasks, loop.create_future())
        asked = set(targets) | ({member.me} if include_self else set())
        run = EvilRun(asked, broadcast, hold)
        self.runs[req.id] = run
        self._coordinating[req.id] = coord
        try:
            for peer in asked:
                await member._send(peer, Kind.SIGN_REQUEST, req.to_body())
            deadline = time.monotonic() + timeout
            asked_ids = {keys.member_index(p) for p in asked}
            while time.monotonic() < deadline:
                everyone = coord.answered >= asked_ids
                idle = not coord.roast._session_of and coord.roast.result is None
                if everyone and (idle or coord.done.done()):
                    break  # everyone asked has answered and no session is waiting: nothing more will come
                if coord.done.done():  # the outcome is known; give the slower members a moment to answer
                    deadline = min(deadline, time.monotonic() + 5)
                await asyncio.sleep(0.05)
            outcome: dict[str, Any]
            if coord.done.done():
                outcome = dict(coord.done.result())
            else:
                outcome = {"status": "unsigned", "reason": "no signature"}
        finally:
            self._coordinating.pop(req.id, None)
            self.runs.pop(req.id, None)
            if not hold:
                own = self._signing.pop(req.id, None)
                if own is not None:
                    member.store.discard_nonce(own.pubnonce_key)
        outcome.update(
            {
                "ready": sorted(p.hex() for p in run.ready),
                "shares": sorted(p.hex() for p in run.shares),
                "rejected": dict(coord.rejections),
                "presignatures": {p.hex(): pubnonces for p, pubnonces in run.presignatures.items()},
                "signed": coord.roast.result is not None and coord.roast.result.ok,
                "broadcast": outcome.get("status") == "broadcast",
            }
        )
        return outcome


class EvilMember(Member):
    def __init__(self, *args: Any, evil_socket: Path, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.signing = EvilSigning(self)
        self.evil_server = EvilRpcServer(self, evil_socket)
        self.tamper: dict[str, dict[str, Any]] = {}  # message kind -> fields overwritten when sent

    async def _send(self, peer: PeerId, kind: str, body: dict[str, Any]) -> None:
        patch = self.tamper.get(kind)
        await super()._send(peer, kind, {**body, **patch} if patch else body)

    async def start(self) -> None:
        await super().start()
        await self.evil_server.start()

    async def stop(self) -> None:
        await self.evil_server.close()
        await super().stop()


# -- commands --------------------------------------------------------------------------------------


def _peers(member: EvilMember, to: Any) -> list[PeerId]:
    if to == "all":
        return [m for m in member.members if m != member.me]
    if to == "everyone":
        return list(member.members)
    return [bytes.fromhex(x) for x in to]


@command("send")
async def _send(member: EvilMember, p: dict[str, Any]) -> dict[str, Any]:
    """One raw federation message, to chosen members (the body is sent as given)."""
    peers = _peers(member, p["to"])
    encode(p["kind"], p["body"])  # fail here, not on the wire, if it is not encodable
    for peer in peers:
        await member._send(peer, p["kind"], p["body"])
    return {"sent": len(peers)}


@command("tamper")
async def _tamper(member: EvilMember, p: dict[str, Any]) -> dict[str, Any]:
    """From now on, overwrite `patch`'s fields in every `kind` message this member sends (its honest
    replies included); a null patch stops it."""
    if p.get("patch") is None:
        member.tamper.pop(p["kind"], None)
    else:
        member.tamper[p["kind"]] = dict(p["patch"])
    return {"tamper": member.tamper}


@command("sign")
async def _sign(member: EvilMember, p: dict[str, Any]) -> dict[str, Any]:
    """Coordinate ROAST for any request body, asking only `to` (and itself if `self`)."""
    req = SigningRequest.from_message(Message("sign_request", p["request"]))
    assert isinstance(member.signing, EvilSigning)
    return await member.signing.evil_sign(
        req,
        _peers(member, p.get("to", "all")),
        bool(p.get("self", False)),
        bool(p.get("broadcast", False)),
        float(p.get("timeout", 30)),
        bool(p.get("hold", False)),
    )


@command("coins")
async def _coins(member: EvilMember, p: dict[str, Any]) -> list[dict[str, Any]]:
    assert member.keys is not None and member.membership.hooks.rpc is not None and member.chain is not None
    coins = await asyncio.to_thread(
        find_coins, member.chain_view, member.chain, member.keys, int(p.get("min_confirmations", 1))
    )
    return [
        {
            "txid": c.utxo.txid,
            "vout": c.utxo.vout,
            "sats": c.utxo.amount_sats,
            "path": list(c.path),
            "script": c.utxo.script_pubkey.hex(),
            "confirmations": c.utxo.confirmations,
        }
        for c in coins
    ]


@command("anchor")
async def _anchor(member: EvilMember, p: dict[str, Any]) -> dict[str, Any]:
    """The epoch's anchor and canonical change path as the attacker's own index shows them (honest
    members derive the same from the same blocks)."""
    assert member.keys is not None
    await asyncio.to_thread(member.chain_view.refresh)
    anchor = member.chain_view.anchor(member.keys.epoch)
    return {
        "outpoint": list(anchor.outpoint) if anchor.outpoint else None,
        "change_path": [1, anchor.change_index],
        "change_script": member.keys.script((1, anchor.change_index)).hex(),
    }


@command("keys")
async def _keys(member: EvilMember, p: dict[str, Any]) -> dict[str, Any]:
    keys = member.keys
    assert keys is not None
    return {
        "epoch": keys.epoch,
        "members": [m.hex() for m in keys.members],
        "me": member.me.hex(),
        "my_index": keys.member_index(member.me),
        "threshold": keys.threshold,
        "group_key": keys.group_key.hex(),
    }


@command("script")
async def _script(member: EvilMember, p: dict[str, Any]) -> dict[str, Any]:
    keys = member.keys
    assert keys is not None
    path = p["path"]
    return {"script": keys.script(path).hex(), "address": p2tr_address(keys.output_key(path), keys.network)}


def load_command_modules() -> list[str]:
    """Import every `adversary.commands_*` module, so their commands join `COMMANDS`."""
    import adversary

    names = [m.name for m in pkgutil.iter_modules(adversary.__path__) if m.name.startswith("commands_")]
    for name in sorted(names):
        importlib.import_module(f"adversary.{name}")
    return names


def main() -> None:
    load_command_modules()
    parser = argparse.ArgumentParser(prog="adversary.attacker")
    parser.add_argument("cmd", choices=["run"])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    import adversary.evil_membership  # noqa: F401 - registers the membership commands

    config = load_config(args.config)
    daemon.setup_logging(config.data_dir)
    # the daemon builds its member through member_config: the attacker's member class goes in there
    member_config.Member = functools.partial(EvilMember, evil_socket=config.data_dir / SOCKET_NAME)  # type: ignore[misc]
    asyncio.run(daemon.run(config))


if __name__ == "__main__":
    main()

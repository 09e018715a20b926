"""The federation service behind the commands: what `frost-*` does, for the daemon and the plugin.

It turns a user's intent (an address, a payout table, a PSBT) into a signing request for the
member's ROAST run and the result into JSON; the member node does the protocol work."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from bitcoin.core import CTransaction, b2lx

from frostfed.bitcoin.bond import claim_bond
from frostfed.bitcoin.chain import BitcoindRpc, ChainError
from frostfed.bitcoin.fee_estimate import choose_feerate
from frostfed.bitcoin.ledger import Ledger, LedgerError
from frostfed.bitcoin.payout import PayoutBuildError, build_payout_tx
from frostfed.bitcoin.psbt import Psbt, PsbtError
from frostfed.bitcoin.standardness import keypath_vsize
from frostfed.bitcoin.taproot import AddressError, address_from_script, p2tr_address, script_from_address
from frostfed.federation import commands, health, progress
from frostfed.federation.coins import AnchorPending, CoinError, payout_coins, select_coins
from frostfed.federation.epoch_keys import CHANGE, RECEIVE, EpochKeys, PathError, check_path
from frostfed.federation.fee_bump import plan_bump, replaced_by
from frostfed.federation.membership import MembershipError
from frostfed.federation.node import Member
from frostfed.federation.roast_signing import SigningError
from frostfed.federation.signing_request import SigningRequest

RpcError = commands.RpcError


class _LedgerCommands:
    """frost-ledger-*: the pool's share accounting credits miners, and anyone reads the member's own ledger."""

    member: Member

    def _ledger(self) -> Ledger:
        if self.member.ledger is None:
            raise RpcError(commands.NOT_FOUND, "this member keeps no ledger")
        return self.member.ledger

    def _script(self, address: str) -> bytes:
        try:
            return script_from_address(address, self.member.network)
        except AddressError as e:
            raise RpcError(commands.INVALID_PARAMS, f"address: {e}") from None

    def _address(self, script: bytes) -> str:
        return address_from_script(script, self.member.network) or script.hex()

    async def ledger_credit(self, address: str, sats: int, key: str) -> dict[str, Any]:
        ledger, script = self._ledger(), self._script(address)
        try:
            credited = await asyncio.to_thread(ledger.credit_once, key, script, sats, int(time.time()))
        except LedgerError as e:
            raise RpcError(commands.INVALID_PARAMS, str(e)) from None
        return {"address": address, "sats": sats, "key": key, "credited": credited, **self._debt(ledger, script)}

    def _debt(self, ledger: Ledger, script: bytes) -> dict[str, Any]:
        st = ledger.status(script)
        return {"total_credited": st.credited, "paid": st.paid, "reserved": st.reserved, "available": st.available}

    async def ledger(self, address: str | None) -> dict[str, Any]:
        ledger = self._ledger()
        scripts = [self._script(address)] if address is not None else await asyncio.to_thread(ledger.scripts)
        return {"debts": [{"address": self._address(s), **self._debt(ledger, s)} for s in scripts]}

    async def ledger_history(self, address: str | None) -> dict[str, Any]:
        ledger = self._ledger()
        only = self._script(address) if address is not None else None
        credits = await asyncio.to_thread(ledger.keyed_credits)
        payouts = await asyncio.to_thread(ledger.payouts)
        return {
            "credits": [
                {"key": k, "address": self._address(s), "sats": n, "time": t}
                for k, s, n, t in credits
                if only is None or s == only
            ],
            "payouts": [
                {"txid": txid, "height": h, "address": self._address(s), "sats": n}
                for txid, h, s, n in payouts
                if only is None or s == only
            ],
        }


class FederationService(_LedgerCommands):
    def __init__(self, member: Member, rpc: BitcoindRpc | None) -> None:
        self.member = member
        self.rpc = rpc
        self._payout_lock = asyncio.Lock()

    def _keys(self) -> EpochKeys:
        keys = self.member.keys
        if keys is None:
            state = self.member.status()
            detail = f" ({state['dkg_error']})" if state.get("dkg_error") else ""
            raise RpcError(
                commands.NOT_READY,
                f"the federation has no key yet: the DKG is running and needs all {len(self.member.members)} "
                f"members online ({state['online']} are){detail}",
            )
        return keys

    async def status(self) -> dict[str, Any]:
        st = self.member.status()
        keys = self.member.keys
        if keys is not None:
            st["addresses_issued"] = self.member.store.address_count(keys.epoch)
            st["descriptor"] = keys.descriptor(RECEIVE)
            anchor = self.member.chain_view.anchor(keys.epoch)  # what the next payout or PSBT must spend
            st["anchor"] = f"{anchor.outpoint[0]}:{anchor.outpoint[1]}" if anchor.outpoint else None
            st["change_path"] = f"m/{CHANGE}/{anchor.change_index}"
            st["change_address"] = p2tr_address(keys.output_key((CHANGE, anchor.change_index)), keys.network)
        st.update(await health.of(self.member).status())
        st["in_progress"] = progress.status(self.member)
        return st

    async def newaddr(self) -> dict[str, Any]:
        keys = self._keys()
        store = self.member.store
        idx = store.next_address_index(keys.epoch)
        address = p2tr_address(keys.output_key((RECEIVE, idx)), keys.network)
        store.record_address(keys.epoch, idx, address)
        await self.member.announce_address(keys.epoch, idx)
        return {"address": address, "index": idx, "path": f"m/{RECEIVE}/{idx}", "epoch": keys.epoch}

    async def descriptor(self) -> dict[str, Any]:
        keys = self._keys()
        return {
            "descriptor": keys.descriptor(RECEIVE),
            "change_descriptor": keys.descriptor(CHANGE),
            "xpub": keys.xpub(),
            "group_key": keys.group_key.hex(),
            "epoch": keys.epoch,
        }

    async def members(self) -> dict[str, Any]:
        st = self.member.status()
        return {"epoch": st["epoch"], "threshold": st["threshold"], "members": st["members"]}

    async def requests(self, request_id: str | None) -> dict[str, Any]:
        rows = self.member.store.requests(request_id)
        if request_id is not None and not rows:
            raise RpcError(commands.NOT_FOUND, f"no request with id {request_id}")
        for row in rows:  # a payout a fee bump replaced on chain: say so, and by which transaction
            if (by := replaced_by(self.member.chain_view.index, row)) is not None:
                row["status"], row["replaced_by"] = "replaced", by
        if request_id is not None:
            return {"requests": rows}
        return {"requests": rows, "refused_changes": self.member.store.refusals()}

    async def payout(self, outputs: list[dict[str, Any]], feerate: float | None) -> dict[str, Any]:
        keys = self._keys()
        member = self.member
        if member.chain is None:
            raise RpcError(commands.CHAIN_ERROR, "this member has no chain source to find the federation's coins")
        payouts = []
        for i, o in enumerate(outputs):
            try:
                payouts.append((script_from_address(o["address"], keys.network), o["sats"]))
            except AddressError as e:
                raise RpcError(commands.INVALID_PARAMS, f"outputs[{i}]: {e}") from None
        s = member.policy_settings
        async with self._payout_lock:  # two payouts at once would pick the same coins
            try:
                # the proposal only: every signer checks the fee against its own bounds and budget
                choice = await asyncio.to_thread(choose_feerate, member.chain, s.min_feerate, s.max_feerate, feerate)
                rate = choice.sat_per_vb
                plan = await asyncio.to_thread(
                    payout_coins, member.chain_view, member.chain, keys, s.min_confirmations
                )
                total = sum(sats for _, sats in payouts)
                # enough for every output and a change above dust: the change carries the anchor on
                margin = 400 + int(rate * (43 * (len(payouts) + 1) + 11))
                chosen = select_coins(plan.others, total + margin, int(70 * rate) + 1, plan.anchor)
                change_path = plan.change_path
                tx = build_payout_tx([c.utxo for c in chosen], payouts, keys.script(change_path), rate)
                if not any(bytes(o.scriptPubKey) == keys.script(change_path) for o in tx.vout):
                    raise CoinError("the federation's coins leave no change above dust for the anchor; fund it")
            except AnchorPending as e:
                raise RpcError(commands.SIGNING_FAILED, f"{self._pending_payout(e.anchor)}{e}") from None
            except (CoinError, PayoutBuildError) as e:
                raise RpcError(commands.SIGNING_FAILED, str(e)) from None
            except ChainError as e:
                raise RpcError(commands.CHAIN_ERROR, f"bitcoind: {e}") from None
            change = {
                i: change_path for i, o in enumerate(tx.vout) if bytes(o.scriptPubKey) == keys.script(change_path)
            }
            req = SigningRequest(secrets.token_hex(8), keys.epoch, "payout", tx, tuple(c.path for c in chosen), change)
            outcome = await self._sign(req)
        return {
            "id": req.id,
            "txid": outcome["txid"],
            "status": outcome["status"],
            "fee_sats": sum(c.utxo.amount_sats for c in chosen) - sum(o.nValue for o in tx.vout),
            "vsize": keypath_vsize(tx),
            "inputs": len(chosen),
            "signers": outcome["signers"],
            "malicious": outcome["malicious"],
            "sessions": outcome["sessions"],
            "rejections": outcome["rejections"],
            "tx": outcome["tx"],
            **choice.to_json(),
        }

    async def bumpfee(self, id: str, feerate: float | None) -> dict[str, Any]:
        keys = self._keys()
        member = self.member
        if member.chain is None:
            raise RpcError(commands.CHAIN_ERROR, "this member has no chain source to check the payout's coins")
        async with self._payout_lock:
            try:
                plan = await asyncio.to_thread(plan_bump, member.ctx, id, feerate)
            except ChainError as e:
                raise RpcError(commands.CHAIN_ERROR, f"bitcoind: {e}") from None
            outcome = await self._sign(plan.request)
        bump = plan.bump
        return {
            "id": plan.request.id,
            "replaces": id,
            "replaced_txid": plan.original.txid,
            "txid": outcome["txid"],
            "status": outcome["status"],
            "fee_sats": bump.fee_sats,
            "original_fee_sats": bump.original_fee_sats,
            "vsize": bump.vsize,
            "epoch": keys.epoch,
            "signers": outcome["signers"],
            "malicious": outcome["malicious"],
            "sessions": outcome["sessions"],
            "rejections": outcome["rejections"],
            "tx": outcome["tx"],
            **plan.choice.to_json(),
            "feerate": round(bump.fee_rate, 3),
        }

    def _pending_payout(self, anchor: tuple[str, int]) -> str:
        """Names the request this member knows of whose broadcast transaction spends the anchor."""
        for r in reversed(self.member.store.requests()):
            if r.get("status") != "broadcast" or r.get("kind") not in ("payout", "psbt", "bump"):
                continue
            try:
                tx = CTransaction.deserialize(bytes.fromhex(r["request"]["tx"]))
            except Exception:  # a record this member cannot read names nothing
                continue
            if any((b2lx(i.prevout.hash), i.prevout.n) == anchor for i in tx.vin):
                return f"payout {r['id']} awaits confirmation (frost-bumpfee {r['id']} raises its fee): "
        return ""

    async def _sign(self, req: SigningRequest) -> dict[str, Any]:
        try:
            return await self.member.signing.request_signatures(req)
        except SigningError as e:
            code = commands.POLICY_REJECTED if e.outcome.get("status") == "rejected" else commands.SIGNING_FAILED
            raise RpcError(code, str(e), e.outcome) from None

    # -- membership ----------------------------------------------------------------------------

    async def _change(self, kind: str, subject: bytes, **kw: Any) -> dict[str, Any]:
        self._keys()
        try:
            return await self.member.membership.propose(kind, subject, operator=True, **kw)
        except MembershipError as e:
            raise RpcError(commands.MEMBERSHIP_REFUSED, str(e)) from None

    async def join(self, id: str, address: str, bond_sats: int | None, lock_blocks: int | None) -> dict[str, Any]:
        return await self._change(
            "join", _member_bytes(id), address=address, bond_sats=bond_sats, bond_blocks=lock_blocks
        )

    async def leave(self) -> dict[str, Any]:
        return await self._change("leave", self.member.me)

    async def expel(self, member: str) -> dict[str, Any]:
        return await self._change("expel", _member_bytes(member))

    async def admit(self, id: str, min_bond_sats: int | None) -> dict[str, Any]:
        settings = self.member.membership.settings
        bond = max(settings.min_bond_sats, min_bond_sats or 0)
        self.member.store.approve("join", _member_bytes(id), bond)
        return {"admitted": id, "min_bond_sats": bond, **self.member.membership.approvals()}

    async def approve_expel(self, member: str) -> dict[str, Any]:
        self.member.store.approve("expel", _member_bytes(member))
        return {"expel_approved": member, **self.member.membership.approvals()}

    async def revoke(self, member: str) -> dict[str, Any]:
        subject = _member_bytes(member)
        withdrawn = [k for k in ("join", "expel") if self.member.store.withdraw_approval(k, subject)]
        if not withdrawn:
            raise RpcError(
                commands.NOT_FOUND, f"this member's operator has neither admitted nor approved expelling {member}"
            )
        return {"revoked": member, "kinds": withdrawn, **self.member.membership.approvals()}

    async def abort_change(self, reason: str | None) -> dict[str, Any]:
        try:
            return self.member.membership.abort_change(reason)
        except MembershipError as e:
            raise RpcError(commands.NOT_FOUND, str(e)) from None

    async def epochs(self) -> dict[str, Any]:
        store = self.member.store
        membership = self.member.membership
        return {
            "epochs": [
                {
                    "epoch": e.epoch,
                    "status": e.status,
                    "members": [m.hex() for m in e.members],
                    "threshold": e.threshold,
                    "group_key": e.group_key.hex(),
                    "share_held": e.sealed_share is not None,
                    "transition_txid": e.activation_txid or membership.transition_txid(e.epoch),
                }
                for e in store.epochs()
            ],
            "change": membership.status(),
            "left_at_epoch": membership.left_at_epoch(),
            "last_change_height": membership.last_change_height(),
            "approvals": membership.approvals(),
            "offline_seconds": {k.hex(): round(v, 1) for k, v in membership.clock.offline.items()},
            "refused_changes": store.refusals(),
        }

    async def bond_claim(self, address: str) -> dict[str, Any]:
        member = self.member
        bond = member.membership.bond()
        if bond is None:
            raise RpcError(commands.NOT_FOUND, "this member has no fidelity bond")
        if member.chain is None or member.membership.bond_key is None:
            raise RpcError(commands.CHAIN_ERROR, "this member has no chain source")
        try:
            dest = script_from_address(address, member.network)
        except AddressError as e:
            raise RpcError(commands.INVALID_PARAMS, str(e)) from None
        tip = await asyncio.to_thread(member.chain.tip_height)
        if tip < bond["locktime"]:  # final only in a block above the lock time
            raise RpcError(
                commands.SIGNING_FAILED,
                f"the bond is locked until block {bond['locktime']}; the chain is at {tip}",
            )
        tx = claim_bond(
            (bond["txid"], bond["vout"]), bond["sats"], member.membership.bond_key, bond["locktime"], dest, 500
        )
        try:
            txid = await asyncio.to_thread(member.chain.broadcast, tx)
        except ChainError as e:
            raise RpcError(commands.CHAIN_ERROR, f"the claim was refused: {e}") from None
        return {"txid": txid, "sats": bond["sats"] - 500, "address": address}

    async def sign(self, psbt: str) -> dict[str, Any]:
        keys = self._keys()
        try:
            p = Psbt.from_base64(psbt)
        except (PsbtError, ValueError) as e:
            raise RpcError(commands.INVALID_PARAMS, f"not a valid PSBT: {e}") from None
        fingerprint = keys.fingerprint()
        input_paths = []
        for i, inp in enumerate(p.inputs):
            path = _our_path(inp.tap_bip32_derivations, fingerprint)
            if path is None:
                raise RpcError(
                    commands.INVALID_PARAMS,
                    f"input {i} has no Taproot BIP32 derivation from this federation's key "
                    f"(fingerprint {fingerprint.hex()})",
                )
            input_paths.append(path)
        change = {}
        for i, out in enumerate(p.outputs):
            path = _our_path(out.tap_bip32_derivations, fingerprint)
            if path is not None:
                change[i] = path
        req = SigningRequest(
            secrets.token_hex(8), keys.epoch, "psbt", p.tx, tuple(input_paths), change, psbt=p.serialize()
        )
        outcome = await self._sign(req)
        for inp, sig in zip(p.inputs, outcome["signatures"], strict=True):
            inp.tap_key_sig = bytes.fromhex(sig)
        return {
            "id": req.id,
            "psbt": p.to_base64(),
            "txid": outcome["txid"],
            "signers": outcome["signers"],
            "malicious": outcome["malicious"],
            "rejections": outcome["rejections"],
        }


def _member_bytes(hexid: str) -> bytes:
    return bytes.fromhex(hexid)


def _our_path(derivations: dict[bytes, Any], fingerprint: bytes) -> tuple[int, int] | None:
    for d in derivations.values():
        if d.origin.fingerprint == fingerprint and not d.leaf_hashes:
            try:
                return check_path(d.origin.path)
            except PathError:
                return None
    return None

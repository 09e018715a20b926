"""The joiner's wallet: the coin that pays its fidelity bond, and its signature on the join transaction.

A joiner offers one confirmed coin of its own wallet (reserved until the change ends), and later signs
that coin's input of the transition transaction, but only if the transaction pays the agreed bond and
returns the rest to the joiner less a bounded fee. Standalone the wallet is bitcoind's
(`listunspent` / `signrawtransactionwithwallet`); inside Core Lightning it is the node's own wallet
(`fundpsbt` / `signpsbt` / `unreserveinputs`), so the plugin never sees a private key.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from bitcoin.core import CTransaction, CTxIn, CTxOut, b2lx
from bitcoin.core.script import SIGHASH_ALL, SIGVERSION_WITNESS_V0, CScript, SignatureHash
from coincurve import PublicKey, PublicKeyXOnly

from frostfed.bitcoin.chain import ChainError, btc_to_sats
from frostfed.bitcoin.psbt import (
    PSBT_IN_FINAL_SCRIPTSIG,
    PSBT_IN_NON_WITNESS_UTXO,
    PSBT_IN_PARTIAL_SIG,
    Psbt,
    PsbtError,
)
from frostfed.bitcoin.sighash import SIGHASH_DEFAULT, taproot_sighash
from frostfed.bitcoin.taproot import script_from_address

log = logging.getLogger(__name__)

Outpoint = tuple[str, int]

FEE_MARGIN_SATS = 20_000
"""What a joiner's coin must hold beyond the bond, and the most the join may take from it as fee."""

RESERVE_BLOCKS = 144
"""How long lightningd keeps the offered coin reserved (a change takes minutes; this outlives it)."""

PSBT_IN_REDEEM_SCRIPT = 0x04


class BondWalletError(Exception):
    """The wallet cannot offer a coin, or refuses (or fails) to sign; the message says why."""


@dataclass(frozen=True)
class WalletCoin:
    """The coin a joiner offers: the input of the join transaction, and where its change goes."""

    outpoint: Outpoint
    amount: int
    change_script: bytes
    utxo: CTxOut


class BondWallet(ABC):
    """One outstanding offer at a time: `offer`, then `sign` the transaction that spends it, or
    `release` it when the change fails."""

    def __init__(self) -> None:
        self.coin: WalletCoin | None = None

    @abstractmethod
    def offer(self, bond_sats: int, network: str) -> WalletCoin:
        """Reserve a confirmed coin worth at least `bond_sats` plus the fee margin."""

    @abstractmethod
    def _sign_input(self, tx: CTransaction, index: int, spent: list[CTxOut]) -> tuple[bytes, list[bytes]]:
        """The wallet's (scriptSig, witness) for input `index`, all checks already passed."""

    @abstractmethod
    def release(self) -> None:
        """Give the offered coin back to the wallet (the change failed); safe to call at any time."""

    def sign(
        self,
        tx: CTransaction,
        prevouts: dict[Outpoint, CTxOut],
        outpoint: Outpoint,
        bond: CTxOut,
        max_fee_sats: int = FEE_MARGIN_SATS,
    ) -> tuple[bytes, list[bytes]]:
        """Sign the offered coin's input of `tx`, whose other inputs spend `prevouts`. Refused unless
        `tx` spends the coin exactly once, pays `bond` exactly, and hands the joiner back everything
        but `max_fee_sats` on its change script; a refusal or a failure releases the coin."""
        coin = self.coin
        if coin is None or coin.outpoint != outpoint:
            raise BondWalletError("this wallet offered no such coin")
        try:
            return self._sign_checked(tx, prevouts, coin, bond, max_fee_sats)
        except BondWalletError:
            self.release()  # a join that went wrong will not be retried with this coin
            raise

    def _sign_checked(
        self, tx: CTransaction, prevouts: dict[Outpoint, CTxOut], coin: WalletCoin, bond: CTxOut, max_fee_sats: int
    ) -> tuple[bytes, list[bytes]]:
        index = check_join_tx(tx, coin, bond, max_fee_sats)
        spent = []
        for i, txin in enumerate(tx.vin):
            op = (b2lx(txin.prevout.hash), txin.prevout.n)
            if i == index:
                spent.append(coin.utxo)
            elif op in prevouts:
                spent.append(prevouts[op])
            else:
                raise BondWalletError(f"input {i} spends {op[0]}:{op[1]}, whose output was not given")
        script_sig, witness = self._sign_input(tx, index, spent)
        verify_input(tx, index, spent, script_sig, witness)
        return script_sig, witness


def check_join_tx(tx: CTransaction, coin: WalletCoin, bond: CTxOut, max_fee_sats: int) -> int:
    """The index of the coin's input in a join transaction the joiner can sign; BondWalletError if not."""
    mine = [i for i, txin in enumerate(tx.vin) if (b2lx(txin.prevout.hash), txin.prevout.n) == coin.outpoint]
    if len(mine) != 1:
        raise BondWalletError("the transaction does not spend the offered coin exactly once")
    bonds = [o for o in tx.vout if bytes(o.scriptPubKey) == bytes(bond.scriptPubKey)]
    if len(bonds) != 1 or bonds[0].nValue != bond.nValue:
        raise BondWalletError(f"the transaction does not pay the agreed bond of {bond.nValue} sats exactly once")
    change = sum(o.nValue for o in tx.vout if bytes(o.scriptPubKey) == coin.change_script)
    fee = coin.amount - bond.nValue - change
    if fee > max_fee_sats or fee < 0:
        raise BondWalletError(
            f"the transaction takes {fee} sats of the joiner's coin as fee (at most {max_fee_sats} agreed)"
        )
    return mine[0]


def verify_input(tx: CTransaction, index: int, spent: list[CTxOut], script_sig: bytes, witness: list[bytes]) -> None:
    """Check the wallet's signature before it leaves: a wrong one would only fail at broadcast."""
    script = bytes(spent[index].scriptPubKey)
    try:
        if len(script) == 34 and script[:2] == b"\x51\x20":
            if script_sig or len(witness) != 1 or len(witness[0]) not in (64, 65):
                raise BondWalletError("a Taproot key-path spend is one 64- or 65-byte signature")
            sig = witness[0]
            hash_type = sig[64] if len(sig) == 65 else SIGHASH_DEFAULT
            msg = taproot_sighash(tx, index, spent, hash_type)
            ok = PublicKeyXOnly(script[2:]).verify(sig[:64], msg)
        elif len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
            if witness:
                raise BondWalletError("a P2PKH input has no witness")
            sig, key = _two_pushes(script_sig)
            ok = _ecdsa_ok(tx, index, spent[index].nValue, script[3:23], sig, key, segwit=False)
        else:
            program = _p2wpkh_program(script, script_sig)
            if len(witness) != 2:
                raise BondWalletError("a P2WPKH witness is a signature and a key")
            ok = _ecdsa_ok(tx, index, spent[index].nValue, program, witness[0], witness[1], segwit=True)
    except (ValueError, TypeError) as e:
        raise BondWalletError(f"the wallet's signature does not parse: {e}") from None
    if not ok:
        raise BondWalletError("the wallet's signature of the bond input does not verify")


def _hash160(b: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(b).digest()).digest()


def _ecdsa_ok(
    tx: CTransaction, index: int, amount: int, keyhash: bytes, sig: bytes, key: bytes, *, segwit: bool
) -> bool:
    if _hash160(key) != keyhash:
        raise BondWalletError("the signature does not come with the key of the coin")
    if not sig or sig[-1] != SIGHASH_ALL:
        raise BondWalletError("the wallet's signature is not SIGHASH_ALL")
    code = CScript(b"\x76\xa9\x14" + keyhash + b"\x88\xac")
    if segwit:
        digest = SignatureHash(code, tx, index, SIGHASH_ALL, amount, SIGVERSION_WITNESS_V0)
    else:
        digest = SignatureHash(code, tx, index, SIGHASH_ALL)
    return PublicKey(key).verify(sig[:-1], digest, hasher=None)


def _two_pushes(script_sig: bytes) -> tuple[bytes, bytes]:
    """<signature> <key> of a P2PKH scriptSig (direct pushes only, as wallets make them)."""
    items = []
    rest = script_sig
    while rest:
        n = rest[0]
        if not 1 <= n <= 75 or len(rest) < 1 + n:
            raise BondWalletError("the P2PKH scriptSig is not two pushes")
        items.append(rest[1 : 1 + n])
        rest = rest[1 + n :]
    if len(items) != 2:
        raise BondWalletError("the P2PKH scriptSig is not a signature and a key")
    return items[0], items[1]


def _p2wpkh_program(script: bytes, script_sig: bytes) -> bytes:
    """The key hash of a P2WPKH coin, native or nested in P2SH (the only other kind wallets pay from)."""
    if len(script) == 22 and script[:2] == b"\x00\x14":
        if script_sig:
            raise BondWalletError("a native segwit input has an empty scriptSig")
        return script[2:]
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[-1] == 0x87:
        redeem = script_sig[1:]
        if len(script_sig) != 23 or script_sig[0] != 22 or redeem[:2] != b"\x00\x14":
            raise BondWalletError("the scriptSig is not a P2SH-P2WPKH redeem script")
        if _hash160(redeem) != script[2:22]:
            raise BondWalletError("the redeem script does not match the coin")
        return redeem[2:]
    raise BondWalletError(f"the wallet pays from a script this joiner cannot check: {script.hex()}")


# --- bitcoind ---------------------------------------------------------------------------------------------


class WalletRpc(Protocol):
    def call(self, method: str, *params: Any) -> Any: ...


class BitcoindBondWallet(BondWallet):
    """The standalone joiner's bitcoind wallet; the offered coin is locked (`lockunspent`) meanwhile."""

    def __init__(self, rpc: WalletRpc) -> None:
        super().__init__()
        self.rpc = rpc

    def offer(self, bond_sats: int, network: str) -> WalletCoin:
        self.release()
        need = bond_sats + FEE_MARGIN_SATS
        try:
            utxos = [
                u for u in self.rpc.call("listunspent", 1) if u.get("spendable") and btc_to_sats(u["amount"]) >= need
            ]
            if not utxos:
                raise BondWalletError(f"the wallet has no confirmed coin of at least {need} sats for the bond")
            u = min(utxos, key=lambda u: btc_to_sats(u["amount"]))
            change = self.rpc.call("getrawchangeaddress")
            outpoint = (str(u["txid"]), int(u["vout"]))
            self.rpc.call("lockunspent", False, [{"txid": outpoint[0], "vout": outpoint[1]}])
        except ChainError as e:
            raise BondWalletError(f"bitcoind: {e}") from None
        amount = btc_to_sats(u["amount"])
        self.coin = WalletCoin(
            outpoint,
            amount,
            script_from_address(change, network),
            CTxOut(amount, CScript(bytes.fromhex(u["scriptPubKey"]))),
        )
        return self.coin

    def _sign_input(self, tx: CTransaction, index: int, spent: list[CTxOut]) -> tuple[bytes, list[bytes]]:
        prevtxs = [
            {
                "txid": b2lx(txin.prevout.hash),
                "vout": txin.prevout.n,
                "scriptPubKey": bytes(out.scriptPubKey).hex(),
                "amount": Decimal(out.nValue) / Decimal(100_000_000),
            }
            for i, (txin, out) in enumerate(zip(tx.vin, spent, strict=True))
            if i != index
        ]
        try:
            signed = self.rpc.call("signrawtransactionwithwallet", tx.serialize().hex(), prevtxs)
        except ChainError as e:
            raise BondWalletError(f"bitcoind cannot sign: {e}") from None
        assert self.coin is not None
        errors = [e for e in signed.get("errors", []) if (e.get("txid"), e.get("vout")) == self.coin.outpoint]
        if errors:
            raise BondWalletError(f"the wallet cannot sign the bond input: {errors[0].get('error')}")
        signed_tx = CTransaction.deserialize(bytes.fromhex(signed["hex"]))
        stack = list(signed_tx.wit.vtxinwit[index].scriptWitness.stack) if signed_tx.wit.vtxinwit else []
        return bytes(signed_tx.vin[index].scriptSig), [bytes(x) for x in stack]

    def release(self) -> None:
        coin, self.coin = self.coin, None
        if coin is None:
            return
        try:
            self.rpc.call("lockunspent", True, [{"txid": coin.outpoint[0], "vout": coin.outpoint[1]}])
        except ChainError as e:  # spent meanwhile (the change went through) or already unlocked
            log.info("bond coin %s:%d not unlocked: %s", coin.outpoint[0], coin.outpoint[1], e)


# --- Core Lightning ---------------------------------------------------------------------------------------


class NodeRpc(Protocol):
    def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...


class ClnBondWallet(BondWallet):
    """The node's own on-chain wallet, through lightningd: `fundpsbt` picks and reserves the coin,
    `signpsbt` signs only its input, `unreserveinputs` gives it back."""

    def __init__(self, rpc: NodeRpc, *, minconf: int = 1, reserve_blocks: int = RESERVE_BLOCKS) -> None:
        super().__init__()
        self.rpc = rpc
        self.minconf = minconf
        self.reserve_blocks = reserve_blocks
        self._funded: Psbt | None = None

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        try:
            return self.rpc.call(method, params)
        except ChainError as e:
            raise BondWalletError(f"lightningd {method}: {e}") from None

    def offer(self, bond_sats: int, network: str) -> WalletCoin:
        self.release()
        need = bond_sats + FEE_MARGIN_SATS
        # startweight: the bond output (P2TR, 43 vB) and the version, counts and lock time (10.5 vB)
        funded = self._call(
            "fundpsbt",
            {
                "satoshi": need,
                "feerate": "253perkw",
                "startweight": 4 * 43 + 42,
                "minconf": self.minconf,
                "reserve": self.reserve_blocks,
                "excess_as_change": True,
            },
        )
        try:
            psbt = Psbt.from_base64(str(funded["psbt"]))
        except (KeyError, TypeError, PsbtError) as e:
            raise BondWalletError(f"fundpsbt gave no usable PSBT: {e}") from None
        self._funded = psbt
        if len(psbt.inputs) != 1:
            self._unreserve(psbt)
            raise BondWalletError(
                f"the node wallet has no single confirmed coin of at least {need} sats for the bond "
                f"(fundpsbt needed {len(psbt.inputs)})"
            )
        txin = psbt.tx.vin[0]
        utxo = self._input_utxo(psbt, 0)
        outnum = funded.get("change_outnum")
        if isinstance(outnum, int) and 0 <= outnum < len(psbt.tx.vout):
            change = bytes(psbt.tx.vout[outnum].scriptPubKey)
        else:
            address = self._call("newaddr", {"addresstype": "p2tr"}).get("p2tr")
            try:
                change = script_from_address(str(address), network)
            except ValueError as e:
                self._unreserve(psbt)
                raise BondWalletError(f"newaddr gave no usable address: {e}") from None
        self.coin = WalletCoin((b2lx(txin.prevout.hash), txin.prevout.n), utxo.nValue, change, utxo)
        return self.coin

    @staticmethod
    def _input_utxo(psbt: Psbt, i: int) -> CTxOut:
        utxo = psbt.inputs[i].witness_utxo
        if utxo is not None:
            return utxo
        raw = psbt.inputs[i].get(PSBT_IN_NON_WITNESS_UTXO)
        if raw is None:
            raise BondWalletError("fundpsbt gave an input without its output")
        prev = CTransaction.deserialize(raw)
        txin = psbt.tx.vin[i]
        if prev.GetTxid() != txin.prevout.hash or txin.prevout.n >= len(prev.vout):
            raise BondWalletError("fundpsbt gave an input whose previous transaction does not match")
        return prev.vout[txin.prevout.n]

    def _sign_input(self, tx: CTransaction, index: int, spent: list[CTxOut]) -> tuple[bytes, list[bytes]]:
        vin = [CTxIn(i.prevout, nSequence=i.nSequence) for i in tx.vin]
        unsigned = CTransaction(vin, tx.vout, tx.nLockTime, tx.nVersion)
        psbt = Psbt.from_unsigned_tx(unsigned)
        for inp, out in zip(psbt.inputs, spent, strict=True):
            inp.witness_utxo = out
        if self._funded is not None:
            prev = self._funded.inputs[0].get(PSBT_IN_NON_WITNESS_UTXO)
            if prev is not None:
                psbt.inputs[index].set(PSBT_IN_NON_WITNESS_UTXO, prev)
        answer = self._call("signpsbt", {"psbt": psbt.to_base64(), "signonly": [index]})
        try:
            signed = Psbt.from_base64(str(answer["signed_psbt"]))
        except (KeyError, TypeError, PsbtError) as e:
            raise BondWalletError(f"signpsbt gave no usable PSBT: {e}") from None
        if signed.tx.GetTxid() != unsigned.GetTxid():
            raise BondWalletError("signpsbt changed the transaction")
        return final_spend(signed, index)

    def _unreserve(self, psbt: Psbt) -> None:
        try:
            self.rpc.call("unreserveinputs", {"psbt": psbt.to_base64(), "reserve": self.reserve_blocks})
        except ChainError as e:
            log.warning("could not unreserve the bond coin: %s", e)

    def release(self) -> None:
        funded, self._funded = self._funded, None
        self.coin = None
        if funded is not None:
            self._unreserve(funded)


def final_spend(psbt: Psbt, index: int) -> tuple[bytes, list[bytes]]:
    """BIP 174 finalizer for one single-key input: (scriptSig, witness) from its signature fields."""
    inp = psbt.inputs[index]
    final = inp.final_scriptwitness
    if final is not None:
        return inp.get(PSBT_IN_FINAL_SCRIPTSIG) or b"", final
    if inp.tap_key_sig is not None:
        return b"", [inp.tap_key_sig]
    partial = inp.entries(PSBT_IN_PARTIAL_SIG)
    if len(partial) != 1:
        raise BondWalletError(f"the wallet left {len(partial)} signatures on the bond input, expected one")
    pubkey, sig = partial[0]
    redeem = inp.get(PSBT_IN_REDEEM_SCRIPT)
    script_sig = bytes([len(redeem)]) + redeem if redeem else b""
    return script_sig, [sig, pubkey]

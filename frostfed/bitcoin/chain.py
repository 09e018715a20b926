"""Where a member learns the state of the chain: the `ChainSource` interface and its bitcoind implementation.

A member checks every signing request against its own chain view (see `policy.py`), so this interface is
small and says exactly what the policy and the ledger need. A second implementation over Core
Lightning's bitcoin backend (`getutxout`, `getchaininfo`, `getrawblockbyheight`, `sendrawtransaction`,
`estimatefees`) can provide the same methods.

Errors: every failure to get an answer is a `ChainError`; `ChainUnavailable` when the backend cannot be
reached or refuses the credentials, `ChainRpcError` when it answers with an error. A caller that gets a
`ChainError` must not sign: it does not know the state of the chain.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from bitcoin.core import CBlock, CTransaction, b2lx

SATS_PER_BTC = 100_000_000


class ChainError(Exception):
    """The chain source could not answer; nothing may be concluded about the chain."""


class ChainUnavailable(ChainError):
    """The backend is unreachable, timed out, or refused our credentials."""


class ChainRpcError(ChainError):
    """The backend answered a call with an error."""

    def __init__(self, method: str, code: int, message: str):
        super().__init__(f"{method} failed: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Utxo:
    """An unspent transaction output as the chain reports it (amounts in satoshis)."""

    txid: str  # hex, in the usual display (reversed) byte order
    vout: int
    amount_sats: int
    script_pubkey: bytes
    confirmations: int  # 0 while only in the mempool
    coinbase: bool


@dataclass(frozen=True)
class ChainBlock:
    """A best-chain block as the chain index reads it: its hash, its parent's hash, its transactions."""

    height: int
    hash: str  # hex, display order
    prev_hash: str
    txs: list[CTransaction]


def parse_block(height: int, raw: bytes) -> ChainBlock:
    block = CBlock.deserialize(raw)
    return ChainBlock(height, b2lx(block.GetHash()), b2lx(block.hashPrevBlock), list(block.vtx))


@dataclass(frozen=True)
class FeeEstimate:
    """A fee rate the chain source estimates (sat/vB), or None with the reason it has none (regtest's
    estimatesmartfee has no data until blocks confirm transactions it saw in its mempool)."""

    sat_per_vb: float | None
    source: str  # what answered, e.g. "estimatesmartfee 6"
    reason: str | None = None


@dataclass(frozen=True)
class MempoolVerdict:
    allowed: bool
    reason: str | None  # the backend's reject reason when not allowed
    txid: str | None = None
    vsize: int | None = None
    fee_sats: int | None = None


class ChainSource(ABC):
    """What the payout policy and the ledger ask of the chain."""

    @abstractmethod
    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        """The output if it is unspent (a mempool spend counts as spent), else None."""

    @abstractmethod
    def tip_height(self) -> int:
        """Height of the best block."""

    @abstractmethod
    def block_transactions(self, height: int) -> list[CTransaction]:
        """Transactions of the best-chain block at `height` (the ledger scans them for payouts)."""

    def block_hash(self, height: int) -> str:
        """Hash of the best-chain block at `height` (the chain index compares it with its own)."""
        return self.block(height).hash

    def block(self, height: int) -> ChainBlock:
        """The best-chain block at `height` with its header links (the chain index follows them)."""
        raise ChainError(f"{type(self).__name__} cannot give whole blocks")

    @abstractmethod
    def broadcast(self, tx: CTransaction) -> str:
        """Send a fully signed transaction to the network; returns its txid."""

    @abstractmethod
    def fee_rate(self, target_blocks: int = 6) -> float | None:
        """Estimated fee rate in sat/vB for confirmation within `target_blocks`, None if unknown."""

    def estimate_fee(self, target_blocks: int = 6) -> FeeEstimate:
        """The fee rate for confirmation within `target_blocks`, with what gave it (or why none)."""
        rate = self.fee_rate(target_blocks)
        return FeeEstimate(rate, f"fee_rate {target_blocks}", None if rate is not None else "no estimate")

    def test_accept(self, tx: CTransaction) -> MempoolVerdict:
        """Would the mempool accept this signed transaction? Backends without the check raise."""
        raise ChainError(f"{type(self).__name__} cannot test mempool acceptance")


def btc_to_sats(value: Any) -> int:
    """Exact conversion of a JSON BTC amount (parsed as Decimal) to satoshis."""
    sats = Decimal(value) * SATS_PER_BTC
    if sats != sats.to_integral_value():
        raise ChainError(f"amount {value} BTC is not a whole number of satoshis")
    return int(sats)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class BitcoindRpc:
    """bitcoind's JSON-RPC over HTTP, one connection per call so any thread may call at any time.

    Credentials: a cookie file (read at each call, so a restarted bitcoind's new cookie is picked up) or
    user and password. Amounts in answers are `Decimal`, never float.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8332,
        *,
        cookie_file: Path | str | None = None,
        user: str | None = None,
        password: str | None = None,
        wallet: str | None = None,
        timeout: float = 30.0,
    ):
        if cookie_file is None and (user is None or password is None):
            raise ValueError("give a cookie file, or both user and password")
        self.host = host
        self.port = port
        self.cookie_file = Path(cookie_file) if cookie_file is not None else None
        self.user = user
        self.password = password
        self.wallet = wallet
        self.timeout = timeout
        self._ids = iter(range(1, 1 << 62))
        self._ids_lock = threading.Lock()

    def for_wallet(self, wallet: str | None) -> BitcoindRpc:
        """The same node, with calls addressed to wallet `wallet` (`/wallet/<name>`)."""
        return BitcoindRpc(
            self.host,
            self.port,
            cookie_file=self.cookie_file,
            user=self.user,
            password=self.password,
            wallet=wallet,
            timeout=self.timeout,
        )

    def _auth(self) -> str:
        if self.cookie_file is not None:
            try:
                token = self.cookie_file.read_text().strip()
            except OSError as e:
                raise ChainUnavailable(f"cannot read bitcoind's cookie file {self.cookie_file}: {e}") from None
        else:
            token = f"{self.user}:{self.password}"
        return "Basic " + base64.b64encode(token.encode()).decode()

    def call(self, method: str, *params: Any) -> Any:
        with self._ids_lock:
            request_id = next(self._ids)
        # Decimal amounts travel as strings, which bitcoind parses exactly.
        body = json.dumps(
            {"jsonrpc": "1.0", "id": request_id, "method": method, "params": list(params)},
            default=_json_default,
        )
        path = "/" if self.wallet is None else f"/wallet/{self.wallet}"
        where = f"bitcoind at {self.host}:{self.port}"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("POST", path, body, {"Authorization": self._auth(), "Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
        except TimeoutError:
            raise ChainUnavailable(f"{where} did not answer {method} within {self.timeout} s") from None
        except (OSError, http.client.HTTPException) as e:
            raise ChainUnavailable(f"{where} is unreachable: {e}") from None
        finally:
            conn.close()
        if resp.status in (401, 403):
            raise ChainUnavailable(f"{where} refused our credentials (HTTP {resp.status})")
        try:
            reply = json.loads(raw, parse_float=Decimal)
        except ValueError:
            raise ChainRpcError(method, resp.status, f"HTTP {resp.status} with a non-JSON body") from None
        if not isinstance(reply, dict):
            raise ChainRpcError(method, resp.status, "answer is not a JSON object")
        error = reply.get("error")
        if error:
            raise ChainRpcError(method, int(error.get("code", 0)), str(error.get("message", error)))
        if resp.status != 200:
            raise ChainRpcError(method, resp.status, f"HTTP {resp.status}")
        return reply.get("result")


class BitcoindChainSource(ChainSource):
    """`ChainSource` over bitcoind's JSON-RPC (no wallet, no txindex needed)."""

    def __init__(self, rpc: BitcoindRpc):
        self.rpc = rpc

    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        if len(txid) != 64 or not all(c in "0123456789abcdefABCDEF" for c in txid) or vout < 0:
            raise ValueError(f"not an outpoint: {txid}:{vout}")
        result = self.rpc.call("gettxout", txid, vout, True)
        if result is None:
            return None
        try:
            return Utxo(
                txid=txid.lower(),
                vout=vout,
                amount_sats=btc_to_sats(result["value"]),
                script_pubkey=bytes.fromhex(result["scriptPubKey"]["hex"]),
                confirmations=int(result["confirmations"]),
                coinbase=bool(result["coinbase"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ChainRpcError("gettxout", 0, f"unexpected answer {result!r}: {e}") from None

    def tip_height(self) -> int:
        return int(self.rpc.call("getblockcount"))

    def block_transactions(self, height: int) -> list[CTransaction]:
        return self.block(height).txs

    def block_hash(self, height: int) -> str:
        return str(self.rpc.call("getblockhash", height))

    def block(self, height: int) -> ChainBlock:
        raw = self.rpc.call("getblock", self.block_hash(height), 0)
        return parse_block(height, bytes.fromhex(raw))

    def broadcast(self, tx: CTransaction) -> str:
        return str(self.rpc.call("sendrawtransaction", tx.serialize().hex()))

    def fee_rate(self, target_blocks: int = 6) -> float | None:
        result = self.rpc.call("estimatesmartfee", target_blocks)
        rate = result.get("feerate") if isinstance(result, dict) else None
        if rate is None:
            return None
        return float(Decimal(rate) * SATS_PER_BTC / 1000)  # BTC/kvB -> sat/vB

    def estimate_fee(self, target_blocks: int = 6) -> FeeEstimate:
        result = self.rpc.call("estimatesmartfee", target_blocks)
        source = f"estimatesmartfee {target_blocks}"
        rate = result.get("feerate") if isinstance(result, dict) else None
        if rate is None:
            errors = result.get("errors") if isinstance(result, dict) else None
            return FeeEstimate(None, source, "; ".join(map(str, errors or ["no fee rate in the answer"])))
        return FeeEstimate(float(Decimal(rate) * SATS_PER_BTC / 1000), source)

    def test_accept(self, tx: CTransaction) -> MempoolVerdict:
        (result,) = self.rpc.call("testmempoolaccept", [tx.serialize().hex()])
        fees = result.get("fees") or {}
        return MempoolVerdict(
            allowed=bool(result.get("allowed")),
            reason=result.get("reject-reason"),
            txid=result.get("txid"),
            vsize=result.get("vsize"),
            fee_sats=btc_to_sats(fees["base"]) if "base" in fees else None,
        )

"""Where a member learns the state of the chain: the `ChainSource` interface and its bitcoind implementation.

A member checks every signing request against its own chain view (see `chain_checks.py`), so this interface is
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
from collections.abc import Sequence
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


class ChainSource(ABC):
    """What the payout policy and the ledger ask of the chain."""

    @abstractmethod
    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        """The output if it is unspent (a mempool spend counts as spent), else None."""

    def get_utxos(self, outpoints: Sequence[tuple[str, int]]) -> list[Utxo | None]:
        """`get_utxo` of each outpoint, in order; a backend that can ask for them at once does."""
        return [self.get_utxo(txid, vout) for txid, vout in outpoints]

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


def _check_outpoint(txid: str, vout: int) -> None:
    if (
        not isinstance(txid, str)
        or len(txid) != 64
        or not all(c in "0123456789abcdefABCDEF" for c in txid)
        or type(vout) is not int
        or vout < 0
    ):
        raise ValueError(f"not an outpoint: {txid}:{vout}")


def _utxo_from(txid: str, vout: int, result: Any) -> Utxo | None:
    """A `gettxout` answer as a Utxo (None: spent or unknown)."""
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
    except (KeyError, TypeError, ValueError, ChainError) as e:
        raise ChainRpcError("gettxout", 0, f"unexpected answer {result!r}: {e}") from None


class BitcoindRpc:
    """bitcoind's JSON-RPC over HTTP/1.1 keep-alive: one persistent connection per thread, so any thread
    may call at any time and a policy check does not pay a TCP handshake per call.

    A connection the node closed while it sat idle (bitcoind drops idle ones after `-rpcservertimeout`,
    or a restart) is opened anew and the call sent once more; a call on a fresh connection is never
    repeated. Credentials: a cookie file (read at each call, so a restarted bitcoind's new cookie is
    picked up) or user and password. Amounts in answers are `Decimal`, never float.
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
        self._local = threading.local()  # .conn: this thread's connection

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

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _post(self, what: str, body: str) -> tuple[int, bytes]:
        """POST `body` on this thread's connection; (HTTP status, body). `what` names the call in errors."""
        path = "/" if self.wallet is None else f"/wallet/{self.wallet}"
        where = f"bitcoind at {self.host}:{self.port}"
        headers = {"Authorization": self._auth(), "Content-Type": "application/json"}
        for attempt in (0, 1):
            conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._local.conn = conn
            try:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                raw = resp.read()
            except TimeoutError:
                self.close()
                raise ChainUnavailable(f"{where} did not answer {what} within {self.timeout} s") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
                self.close()
                if reused and attempt == 0:
                    continue  # the node had closed the idle connection before reading the call
                raise ChainUnavailable(f"{where} is unreachable: {e}") from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise ChainUnavailable(f"{where} is unreachable: {e}") from None
            if resp.will_close:
                self.close()
            return resp.status, raw
        raise AssertionError("unreachable")  # pragma: no cover

    def _reply(self, what: str, status: int, raw: bytes) -> Any:
        if status in (401, 403):
            raise ChainUnavailable(f"bitcoind at {self.host}:{self.port} refused our credentials (HTTP {status})")
        try:
            return json.loads(raw, parse_float=Decimal)
        except ValueError:
            raise ChainRpcError(what, status, f"HTTP {status} with a non-JSON body") from None

    @staticmethod
    def _result(method: str, status: int, reply: Any) -> Any:
        if not isinstance(reply, dict):
            raise ChainRpcError(method, status, "answer is not a JSON object")
        error = reply.get("error")
        if error:
            if not isinstance(error, dict):
                raise ChainRpcError(method, 0, str(error))
            raise ChainRpcError(method, int(error.get("code", 0)), str(error.get("message", error)))
        if status != 200:
            raise ChainRpcError(method, status, f"HTTP {status}")
        return reply.get("result")

    def call(self, method: str, *params: Any) -> Any:
        # Decimal amounts travel as strings, which bitcoind parses exactly.
        body = json.dumps(
            {"jsonrpc": "1.0", "id": self._next_id(), "method": method, "params": list(params)},
            default=_json_default,
        )
        status, raw = self._post(method, body)
        return self._result(method, status, self._reply(method, status, raw))

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Several calls in one JSON-RPC batch (one HTTP round trip); their results, in order. The first
        call that failed raises its `ChainRpcError` (nothing is concluded from the others then)."""
        if not calls:
            return []
        ids = [self._next_id() for _ in calls]
        body = json.dumps(
            [
                {"jsonrpc": "1.0", "id": i, "method": method, "params": list(params)}
                for i, (method, params) in zip(ids, calls, strict=True)
            ],
            default=_json_default,
        )
        what = f"a batch of {len(calls)} calls ({calls[0][0]}, ...)"
        status, raw = self._post(what, body)
        replies = self._reply(what, status, raw)
        if not isinstance(replies, list):  # bitcoind answers a batch it cannot parse with one error object
            self._result(calls[0][0], status, replies)
            raise ChainRpcError(calls[0][0], status, "a batch was not answered with a list")
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        results = []
        for i, (method, _) in zip(ids, calls, strict=True):
            if i not in by_id:
                raise ChainRpcError(method, status, "the batch answer misses this call")
            results.append(self._result(method, 200 if status == 200 else status, by_id[i]))
        return results


class BitcoindChainSource(ChainSource):
    """`ChainSource` over bitcoind's JSON-RPC (no wallet, no txindex needed)."""

    def __init__(self, rpc: BitcoindRpc):
        self.rpc = rpc

    def get_utxo(self, txid: str, vout: int) -> Utxo | None:
        _check_outpoint(txid, vout)
        return _utxo_from(txid, vout, self.rpc.call("gettxout", txid, vout, True))

    def get_utxos(self, outpoints: Sequence[tuple[str, int]]) -> list[Utxo | None]:
        """One JSON-RPC batch of `gettxout`: a request's inputs in one round trip."""
        for txid, vout in outpoints:
            _check_outpoint(txid, vout)
        results = self.rpc.batch([("gettxout", (txid, vout, True)) for txid, vout in outpoints])
        return [_utxo_from(txid, vout, r) for (txid, vout), r in zip(outpoints, results, strict=True)]

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

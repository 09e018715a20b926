"""A strict stand-in for lightningd that drives real plugin processes.

Each `SimNode` runs one plugin file as lightningd does (`LIGHTNINGD_PLUGIN=1`, cwd = the network
directory, JSON-RPC on stdin/stdout), validates its manifest, sends `init`, forwards `lightning-cli`
style calls, and serves the plugin's own calls on `<lightning-dir>/lightning-rpc` with the answers
recorded from Core Lightning v26.06 (see ../shared/cln-protocol). A `SimNetwork` links several nodes:
`sendcustommsg` on one lands in the `custommsg` hook of the other, with no delivery guarantee, and a
`Faults` setting drops, delays and disconnects to exercise the layers above.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut, b2lx, lx
from bitcoin.core.script import CScript
from coincurve import PrivateKey

from frostfed.bitcoin.chain import BitcoindRpc, ChainError, ChainRpcError
from frostfed.bitcoin.psbt import PSBT_IN_NON_WITNESS_UTXO, PSBT_IN_PARTIAL_SIG, Psbt, PsbtError
from frostfed.bitcoin.taproot import script_from_address

from . import signmessage, wire
from .manifest import Manifest, ManifestError, parse_manifest

VERSION = "v26.06.6"
FEATURES = "800898880a8a59a1"
FEATURE_SET = {
    "init": FEATURES,
    "node": "808898880a8a59a1",
    "channel": "",
    "invoice": "02000002024100",
    "bolt12_offer": "",
    "bolt12_invreq": "",
    "bolt12_invoice": "020000",
    "channel_type": "08800000800000",
}
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class CliError(Exception):
    """A JSON-RPC error as `lightning-cli` (or a plugin's RPC call) receives it."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class PluginDied(Exception):
    """The plugin process exited or broke the protocol."""


@dataclass
class Faults:
    """Link misbehaviour applied to every custom message (each a probability in [0, 1])."""

    drop: float = 0.0
    delay: float = 0.0
    max_delay: float = 0.2
    disconnect: float = 0.0
    seed: int = 0


@dataclass
class FaultCounts:
    sent: int = 0
    dropped: int = 0
    delayed: int = 0
    disconnects: int = 0
    delivered: int = 0


def _jsondefault(o: Any) -> Any:
    if isinstance(o, Decimal):
        return float(o)
    raise TypeError(f"not JSON: {type(o).__name__}")


def _bind(method: str, params: Any, names: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    """lightningd's parameter parsing: positional list or object, unknown names refused."""
    if params is None:
        params = {}
    if isinstance(params, list):
        if len(params) > len(names):
            raise CliError(INVALID_PARAMS, f"too many parameters: got {len(params)}, expected {len(names)}")
        bound = dict(zip(names, params, strict=False))
    elif isinstance(params, dict):
        for key in params:
            if key not in names:
                raise CliError(INVALID_PARAMS, f"unknown parameter: {key}")
        bound = dict(params)
    else:
        raise CliError(INVALID_REQUEST, "Expected array or object for params")
    for name in required:
        if bound.get(name) is None:
            raise CliError(INVALID_PARAMS, f"missing required parameter: {name}")
    return bound


DUST_LIMIT = 546
CHANGE_WEIGHT = 4 * 43  # a P2TR output
FEERATE_NAMES = {  # what lightningd falls back to on regtest, where bitcoind estimates no fees
    "opening": 7500,
    "mutual_close": 3750,
    "unilateral_close": 11000,
    "delayed_to_us": 3750,
    "htlc_resolution": 3750,
    "penalty": 3750,
    "min_acceptable": 1875,
    "max_acceptable": 150000,
    "minimum": 253,
    "slow": 1875,
    "normal": 7500,
    "urgent": 11000,
}


def _sats(btc: Any) -> int:
    return int(Decimal(str(btc)) * 100_000_000)


def _u32(name: str, value: Any) -> int:
    """lightningd's param_number: a JSON number or a string of digits, within 32 bits."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdigit()) or int(text) >= 1 << 32:
        raise CliError(INVALID_PARAMS, f"{name}: should be an unsigned 32 bit integer: invalid token '{value}'")
    return int(text)


def _sat_or_all(name: str, value: Any) -> int | None:
    """None for "all"; else sats from 123, "123sat", "123000msat" or "0.00000123btc"."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if text == "all":
        return None
    try:
        if text.endswith("msat") and text[:-4].isdigit() and text[:-4].endswith("000"):
            return int(text[:-7] or "0")
        if text.endswith("sat") and text[:-3].isdigit():
            return int(text[:-3])
        if text.endswith("btc") and "." in text and 1 <= len(text[:-3].partition(".")[2]) <= 8:
            return int(Decimal(text[:-3]) * 100_000_000)
        if text.isascii() and text.isdigit():
            return int(text)
    except ArithmeticError:
        pass
    raise CliError(INVALID_PARAMS, f"{name}: should be a satoshi amount or 'all': invalid token '{value}'")


def _feerate(name: str, value: Any) -> int:
    """Sats per 1000 weight: a name, or a number with an optional perkw/perkb suffix (perkb if none)."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    if text in FEERATE_NAMES:
        return FEERATE_NAMES[text]
    for suffix, div in (("perkw", 1), ("perkb", 4), ("", 4)):
        num = text[: len(text) - len(suffix)] if suffix and text.endswith(suffix) else (text if not suffix else "")
        if num.isascii() and num.isdigit():
            return max(253, int(num) // div)
    raise CliError(INVALID_PARAMS, f"{name}: should be a feerate: invalid token '{value}'")


def _psbt(name: str, value: Any) -> Psbt:
    try:
        return Psbt.from_base64(value) if isinstance(value, str) else Psbt.from_base64("")
    except PsbtError:
        raise CliError(INVALID_PARAMS, f"'{name}' should be a PSBT, not '{value}'") from None


def _input_weight(script: bytes) -> int:
    """Weight of spending a wallet output: 164 for outpoint, sequence and empty scriptSig, plus the
    witness (P2TR: one signature; P2WPKH: signature and key; P2SH-wrapped: its redeem script too)."""
    if len(script) == 34 and script[0] == 0x51:
        return 164 + 66
    if len(script) == 23 and script[0] == 0xA9:
        return 164 + 4 * 23 + 109
    return 164 + 109


def _pubkey(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CliError(INVALID_PARAMS, f"{name}: should be a node id: invalid token {json.dumps(value)}")
    try:
        raw = bytes.fromhex(value)
        if len(raw) != 33 or raw[0] not in (2, 3):
            raise ValueError
        from coincurve import PublicKey

        PublicKey(raw)
    except ValueError:
        raise CliError(INVALID_PARAMS, f"{name}: should be a node id: invalid token '{value}'") from None
    return value


class SimNode:
    """One lightningd with one plugin."""

    def __init__(self, net: SimNetwork, index: int, plugin: Path, options: dict[str, Any]) -> None:
        self.net = net
        self.index = index
        self.plugin = plugin
        self.given_options = dict(options)
        secret = hashlib.sha256(f"clnsim node {net.seed} {index}".encode()).digest()
        self.key = PrivateKey(secret)
        self.node_id = self.key.public_key.format().hex()
        self.port = 19840 + index
        self.base_dir = net.base_dir / f"l{index}"
        self.lightning_dir = self.base_dir / "regtest"
        self.rpc_path = self.lightning_dir / "lightning-rpc"
        self.manifest: Manifest | None = None
        self.option_values: dict[str, Any] = {}
        self.option_set: set[str] = set()
        self.peers: dict[str, str] = {}  # connected peer id -> direction
        self.logs: list[tuple[str, str]] = []
        self.fatal: list[str] = []
        self.hook_calls: list[dict[str, Any]] = []
        self.notifications_sent: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []  # every message written to the plugin's stdin
        self.rpc_log: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.running = False
        self._ids = itertools.count(20)
        self._cli_ids = itertools.count(4245)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: asyncio.base_events.Server | None = None
        self._inbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._secret = secret
        self._wallet_rpc: BitcoindRpc | None = None
        self.reservations: dict[tuple[str, int], int] = {}  # outpoint -> reserved_to_block

    # ---- plugin process ----------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        self.lightning_dir.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve_rpc, path=str(self.rpc_path))
        env = dict(os.environ)
        env["LIGHTNINGD_PLUGIN"] = "1"
        env["LIGHTNINGD_VERSION"] = VERSION
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        self.stderr_path = self.base_dir / "plugin.stderr"
        with open(self.stderr_path, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                str(self.plugin),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=str(self.lightning_dir),
                env=env,
            )
        self._tasks.append(asyncio.create_task(self._read_stdout()))
        raw = await self._request("getmanifest", {"allow-deprecated-apis": True}, timeout=timeout)
        if "error" in raw:
            await self._kill()
            raise ManifestError(f"getmanifest failed: {raw['error']}")
        try:
            self.manifest = parse_manifest(raw.get("result"))
            self._resolve_options()
        except ManifestError:
            await self._kill()
            raise
        raw = await self._request(
            "init",
            {
                "options": self._init_options(),
                "configuration": {
                    "lightning-dir": str(self.lightning_dir),
                    "rpc-file": "lightning-rpc",
                    "startup": True,
                    "network": "regtest",
                    "feature_set": dict(FEATURE_SET),
                },
            },
            timeout=timeout,
        )
        if "error" in raw:
            await self._kill()
            raise PluginDied(f"init failed: {raw['error']}")
        if isinstance(raw.get("result"), dict) and "disable" in raw["result"]:
            await self._kill()
            raise PluginDied(f"plugin disabled itself: {raw['result']['disable']}")
        self.running = True
        self._tasks.append(asyncio.create_task(self._deliver_inbox()))

    def _resolve_options(self) -> None:
        """Check the given option values the way lightningd parses its command line."""
        assert self.manifest is not None
        for name, value in self.given_options.items():
            opt = self.manifest.options.get(name)
            if opt is None:
                raise ManifestError(f"unrecognized option '--{name}'")
            values = value if opt.multi and isinstance(value, list) else [value]
            parsed = []
            for v in values:
                if opt.type == "flag":
                    if v is not True:
                        raise ManifestError(f"--{name}: flag options take no value")
                    parsed.append(True)
                elif opt.type == "int":
                    try:
                        parsed.append(int(str(v), 10))
                    except ValueError:
                        raise ManifestError(f"--{name}={v}: '{v}' is not a number") from None
                elif opt.type == "bool":
                    if str(v).lower() not in ("true", "false", "1", "0"):
                        raise ManifestError(f"--{name}={v}: '{v}' is not a bool")
                    parsed.append(str(v).lower() in ("true", "1"))
                else:
                    parsed.append(str(v))
            self.option_values[name] = parsed if opt.multi else parsed[0]
            self.option_set.add(name)

    def _init_options(self) -> dict[str, Any]:
        """Set options as given; unset ones with their default; unset flags left out."""
        assert self.manifest is not None
        out: dict[str, Any] = {}
        for name, opt in self.manifest.options.items():
            if name in self.option_set:
                out[name] = self.option_values[name]
            elif opt.type != "flag" and opt.default is not None:
                out[name] = [opt.default] if opt.multi else opt.default
        return out

    async def stop(self, timeout: float = 10.0) -> None:
        """Like `lightning-cli stop`: peers see us go, then the plugin's stdin closes."""
        self.running = False
        for peer in list(self.peers):
            other = self.net.node_by_id(peer)
            if other is not None:
                await self.net.disconnect(self, other)
        if self.proc is not None and self.proc.returncode is None:
            if self.manifest is not None and "shutdown" in self.manifest.subscriptions:
                with contextlib.suppress(Exception):
                    await self._notify("shutdown", {"shutdown": {}})
            with contextlib.suppress(Exception):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self._kill()
        await self._shutdown()

    async def _kill(self) -> None:
        self.running = False
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        await self._shutdown()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.rpc_path.unlink()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(PluginDied("plugin stopped"))
        self._pending.clear()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def _write(self, obj: dict[str, Any]) -> None:
        if not self.alive or self.proc is None or self.proc.stdin is None:
            raise PluginDied(f"plugin of node {self.index} is not running")
        self.sent.append(obj)
        self.proc.stdin.write(json.dumps(obj, default=_jsondefault).encode() + b"\n\n")
        await self.proc.stdin.drain()

    async def _request(
        self, method: str, params: Any, *, rid: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        rid = rid or f"cln:{method}#{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await self._write({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)

    async def _notify(self, method: str, params: dict[str, Any]) -> None:
        assert self.manifest is not None
        if method in self.manifest.subscriptions or "*" in self.manifest.subscriptions:
            msg = {"jsonrpc": "2.0", "method": method, "params": params}
            self.notifications_sent.append(msg)
            await self._write(msg)

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        while True:
            chunk = await self.proc.stdout.read(65536)
            if not chunk:
                break
            buf += chunk.decode()
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                if buf[0] != "{":  # lightningd: "JSON-RPC message does not start with '{'" and kills it
                    self.fatal.append(f"plugin wrote non-JSON to stdout: {buf[:80]!r}")
                    self.proc.kill()
                    buf = ""
                    break
                try:
                    obj, end = decoder.raw_decode(buf)
                except ValueError:
                    break  # incomplete object: wait for more
                buf = buf[end:]
                self._on_plugin_message(obj)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(PluginDied(f"plugin of node {self.index} exited"))

    def _on_plugin_message(self, obj: Any) -> None:
        if not isinstance(obj, dict):
            self.fatal.append(f"plugin wrote a non-object: {obj!r}")
            return
        if "method" in obj and "id" not in obj:
            if obj["method"] == "log":
                p = obj.get("params", {})
                self.logs.append((p.get("level", "info"), p.get("message", "")))
            return
        rid = obj.get("id")
        fut = self._pending.get(rid) if isinstance(rid, str) else None
        if fut is None:
            self.fatal.append(f"response to an unknown request: {obj!r}")
            return
        if obj.get("jsonrpc") != "2.0" or ("result" in obj) == ("error" in obj):
            self.fatal.append(f"malformed response: {obj!r}")
        if not fut.done():
            fut.set_result(obj)

    # ---- what lightning-cli does -------------------------------------------------------------

    async def cli(self, method: str, /, *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        """`lightning-cli method args...` (positional) or `lightning-cli -k method key=value...`."""
        if args and kwargs:
            raise ValueError("lightning-cli takes positional or keyword parameters, not both")
        params: Any = list(args) if args or not kwargs else dict(kwargs)
        rid = f"cli:{method}#{next(self._cli_ids)}"
        return await self.call(method, params, rid=rid, timeout=timeout)

    async def call(self, method: str, params: Any, *, rid: str, timeout: float = 30.0) -> Any:
        assert self.manifest is not None
        if method in self.manifest.rpcmethods:
            raw = await self._request(method, params, rid=f"{rid}/cln:{method}#{next(self._ids)}", timeout=timeout)
            if "error" in raw:
                err = raw["error"]
                raise CliError(err.get("code", INVALID_REQUEST), err.get("message", ""), err.get("data"))
            return raw["result"]
        if method == "setconfig":
            return await self._setconfig(params, timeout)
        return await self.builtin(method, params)

    async def _setconfig(self, params: Any, timeout: float) -> Any:
        assert self.manifest is not None
        p = _bind("setconfig", params, ("config", "val", "transient"), ("config",))
        opt = self.manifest.options.get(p["config"])
        if opt is None:
            raise CliError(INVALID_PARAMS, f"Unknown config option {p['config']}")
        if not opt.dynamic:
            raise CliError(INVALID_PARAMS, f"{p['config']} is not a dynamic option")
        val = None if p.get("val") is None else str(p["val"])
        raw = await self._request("setconfig", {"config": opt.name, "val": val}, timeout=timeout)
        if "error" in raw:
            raise CliError(raw["error"]["code"], raw["error"]["message"])
        self.given_options[opt.name] = val
        self._resolve_options()
        return {"config": self._config_entry(opt.name)}

    # ---- lightningd's own commands -----------------------------------------------------------

    async def _serve_rpc(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = json.JSONDecoder()
        buf = ""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buf += chunk.decode()
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        req, end = decoder.raw_decode(buf)
                    except ValueError:
                        break
                    buf = buf[end:]
                    resp = await self._answer(req)
                    self.rpc_log.append((req, resp))
                    writer.write(json.dumps(resp, default=_jsondefault).encode() + b"\n\n")
                    await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _answer(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict) or not isinstance(req.get("method"), str) or "id" not in req:
            return {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": INVALID_REQUEST, "message": "Invalid request"},
            }
        rid = req["id"]
        try:
            if req["method"] == "notifications":
                return {"jsonrpc": "2.0", "id": rid, "result": {}}
            result = await self.call(req["method"], req.get("params", {}), rid=str(rid))
            return {"jsonrpc": "2.0", "id": rid, "result": result}
        except CliError as e:
            err: dict[str, Any] = {"code": e.code, "message": e.message}
            if e.data is not None:
                err["data"] = e.data
            return {"jsonrpc": "2.0", "id": rid, "error": err}
        except PluginDied as e:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -4, "message": f"Plugin terminated: {e}"}}

    async def builtin(self, method: str, params: Any) -> Any:
        handler: Callable[[Any], Awaitable[Any]] | None = getattr(self, "_rpc_" + method.replace("-", "_"), None)
        if handler is None or method.startswith("_"):
            raise CliError(METHOD_NOT_FOUND, f"Unknown command '{method}'")
        return await handler(params)

    async def _rpc_getinfo(self, params: Any) -> Any:
        _bind("getinfo", params, (), ())
        height = 0
        if self.net.bitcoind is not None:
            height = await asyncio.to_thread(self.net.bitcoind.call, "getblockcount")
        return {
            "id": self.node_id,
            "alias": f"SIMNODE{self.index}",
            "color": self.node_id[:6],
            "num_peers": len(self.peers),
            "num_pending_channels": 0,
            "num_active_channels": 0,
            "num_inactive_channels": 0,
            "address": [],
            "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": self.port}],
            "version": VERSION,
            "blockheight": height,
            "network": "regtest",
            "fees_collected_msat": 0,
            "lightning-dir": str(self.lightning_dir),
            "our_features": {k: FEATURE_SET[k] for k in ("init", "node", "channel", "invoice")},
        }

    async def _rpc_listpeers(self, params: Any) -> Any:
        p = _bind("listpeers", params, ("id", "level"), ())
        peers = []
        for pid in self.peers:
            if p.get("id") is not None and p["id"] != pid:
                continue
            other = self.net.node_by_id(pid)
            port = other.port if other is not None else 0
            peers.append(
                {
                    "id": pid,
                    "connected": True,
                    "num_channels": 0,
                    "netaddr": [f"127.0.0.1:{port}"],
                    "features": FEATURES,
                }
            )
        return {"peers": peers}

    async def _rpc_connect(self, params: Any) -> Any:
        p = _bind("connect", params, ("id", "host", "port"), ("id",))
        target, host, port = p["id"], p.get("host"), p.get("port")
        if isinstance(target, str) and "@" in target:
            if host is not None:
                raise CliError(INVALID_PARAMS, "Can't specify host as both xxx@yyy and separate argument")
            target, _, addr = target.partition("@")
            host, _, port_s = addr.rpartition(":") if ":" in addr else (addr, "", "")
            port = int(port_s) if port_s else None
        _pubkey("id", target)
        other = self.net.node_by_id(target)
        if target in self.peers and other is not None:
            return self._connect_result(other, self.peers[target])
        if host is None:
            raise CliError(401, f"Unable to connect, no address known for peer {target}")
        port = int(port) if port is not None else 9735
        if other is None or not other.running or host != "127.0.0.1" or port != other.port:
            raise CliError(401, f"All addresses failed: {host}:{port}: Connection establishment: Connection refused.")
        await self.net.connect(self, other)
        return self._connect_result(other, "out")

    def _connect_result(self, other: SimNode, direction: str) -> dict[str, Any]:
        return {
            "id": other.node_id,
            "features": FEATURES,
            "direction": direction,
            "address": {"type": "ipv4", "address": "127.0.0.1", "port": other.port},
        }

    async def _rpc_disconnect(self, params: Any) -> Any:
        p = _bind("disconnect", params, ("id", "force"), ("id",))
        _pubkey("id", p["id"])
        other = self.net.node_by_id(p["id"])
        if p["id"] not in self.peers or other is None:
            raise CliError(INVALID_REQUEST, "Peer not connected")
        await self.net.disconnect(self, other)
        return {}

    async def _rpc_sendcustommsg(self, params: Any) -> Any:
        p = _bind("sendcustommsg", params, ("node_id", "msg"), ("node_id", "msg"))
        peer = _pubkey("node_id", p["node_id"])
        try:
            msg = bytes.fromhex(p["msg"]) if isinstance(p["msg"], str) else None
        except ValueError:
            msg = None
        if msg is None:
            raise CliError(INVALID_PARAMS, f"msg: should be a hex string: invalid token {json.dumps(p['msg'])}")
        if len(msg) < 2:
            raise CliError(INVALID_PARAMS, "msg: should be at least 2 bytes long")
        msgtype = int.from_bytes(msg[:2], "big")
        if msgtype in wire.INTERNAL_TYPES:
            raise CliError(INVALID_REQUEST, wire.refusal(msgtype))
        other = self.net.node_by_id(peer)
        if peer not in self.peers or other is None:
            raise CliError(INVALID_REQUEST, f"No such peer: {peer}")
        await self.net.route(self, other, msg)
        return {"status": "Message sent to connectd for delivery"}

    def makesecret(self, info: bytes) -> bytes:
        return hmac.new(self._secret, b"makesecret" + info, hashlib.sha256).digest()

    async def _rpc_makesecret(self, params: Any) -> Any:
        p = _bind("makesecret", params, ("hex", "string"), ())
        if (p.get("hex") is None) == (p.get("string") is None):
            raise CliError(INVALID_PARAMS, "Must have either hex or string")
        if p.get("string") is not None:
            if not isinstance(p["string"], str):
                raise CliError(INVALID_PARAMS, "string: should be a string")
            info = p["string"].encode()
        else:
            try:
                info = bytes.fromhex(p["hex"])
            except (TypeError, ValueError):
                raise CliError(INVALID_PARAMS, "hex: should be a hex string") from None
        return {"secret": self.makesecret(info).hex()}

    async def _rpc_signmessage(self, params: Any) -> Any:
        p = _bind("signmessage", params, ("message",), ("message",))
        if not isinstance(p["message"], str) or len(p["message"]) > 65535:
            raise CliError(INVALID_PARAMS, "message: should be a string")
        return signmessage.sign(self.key, p["message"])

    async def _rpc_checkmessage(self, params: Any) -> Any:
        p = _bind("checkmessage", params, ("message", "zbase", "pubkey"), ("message", "zbase"))
        if p.get("pubkey") is not None:
            _pubkey("pubkey", p["pubkey"])
        try:
            recovered = signmessage.recover(str(p["message"]), str(p["zbase"])).hex()
        except signmessage.ZbaseError:
            raise CliError(INVALID_PARAMS, "zbase is not valid zbase32") from None
        if p.get("pubkey") is not None:
            return {"pubkey": recovered, "verified": recovered == p["pubkey"]}
        # Without a pubkey lightningd looks the key up among nodes with public channels; here none.
        raise CliError(1301, "pubkey not found in the graph", {"claimed_key": recovered})

    def _config_entry(self, name: str) -> dict[str, Any]:
        assert self.manifest is not None
        opt = self.manifest.options[name]
        is_set = name in self.option_set
        value = self.option_values.get(name, opt.default)
        entry: dict[str, Any] = {}
        if opt.type == "flag":
            entry["set"] = bool(is_set)
        elif opt.multi:
            entry["values_" + {"string": "str", "int": "int", "bool": "bool"}[opt.type]] = (
                value if is_set else [opt.default]
            )
        else:
            entry["value_" + {"string": "str", "int": "int", "bool": "bool"}[opt.type]] = value
        entry["source"] = "cmdline" if is_set else "default"
        entry["plugin"] = str(self.plugin)
        if opt.dynamic:
            entry["dynamic"] = True
        return entry

    def configs(self) -> dict[str, dict[str, Any]]:
        assert self.manifest is not None
        out: dict[str, dict[str, Any]] = {
            "network": {"value_str": "regtest", "source": "cmdline"},
            "lightning-dir": {"value_str": str(self.base_dir), "source": "cmdline"},
            "rpc-file": {"value_str": "lightning-rpc", "source": "default"},
        }
        if self.net.bitcoind is not None:
            b = self.net.bitcoind
            out["bitcoin-rpcconnect"] = {"value_str": b.host, "source": "cmdline"}
            out["bitcoin-rpcport"] = {"value_int": b.port, "source": "cmdline"}
            if b.cookie_file is not None:
                out["bitcoin-datadir"] = {"value_str": str(b.cookie_file.parent.parent), "source": "cmdline"}
            else:
                out["bitcoin-rpcuser"] = {"value_str": b.user, "source": "cmdline"}
                out["bitcoin-rpcpassword"] = {"value_str": b.password, "source": "cmdline"}
        for name, opt in self.manifest.options.items():
            if name in self.option_set or opt.default is not None or opt.type == "flag":
                out[name] = self._config_entry(name)
        return out

    async def _rpc_listconfigs(self, params: Any) -> Any:
        p = _bind("listconfigs", params, ("config",), ())
        configs = self.configs()
        if p.get("config") is not None:
            if p["config"] not in configs:
                raise CliError(INVALID_PARAMS, f"Unknown config option {json.dumps(p['config'])}")
            return {"configs": {p["config"]: configs[p["config"]]}}
        return {"configs": configs}

    # ---- chain calls, answered from the harness's bitcoind (as lightningd's bcli does) -----------

    async def _bitcoind(self, method: str, *args: Any) -> Any:
        if self.net.bitcoind is None:
            raise CliError(-32603, "this harness has no bitcoind attached")
        try:
            return await asyncio.to_thread(self.net.bitcoind.call, method, *args)
        except ChainRpcError:
            raise
        except ChainError as e:  # what bcli reports when bitcoind is unreachable
            raise CliError(-32603, f"bitcoind unavailable: {e}") from e

    async def _rpc_getchaininfo(self, params: Any) -> Any:
        _bind("getchaininfo", params, ("last_height",), ())
        info = await self._bitcoind("getblockchaininfo")
        return {
            "chain": info["chain"],
            "headercount": info["headers"],
            "blockcount": info["blocks"],
            "ibd": info["initialblockdownload"],
        }

    async def _rpc_getutxout(self, params: Any) -> Any:
        p = _bind("getutxout", params, ("txid", "vout"), ("txid", "vout"))
        out = await self._bitcoind("gettxout", p["txid"], int(p["vout"]))
        if out is None:
            return {"amount": None, "script": None}
        sats = int(Decimal(str(out["value"])) * 100_000_000)
        return {"amount": f"{sats}sat", "script": out["scriptPubKey"]["hex"]}

    async def _rpc_getrawblockbyheight(self, params: Any) -> Any:
        p = _bind("getrawblockbyheight", params, ("height",), ("height",))
        try:
            blockhash = await self._bitcoind("getblockhash", int(p["height"]))
        except ChainRpcError:
            return {"blockhash": None, "block": None}
        return {"blockhash": blockhash, "block": await self._bitcoind("getblock", blockhash, 0)}

    async def _rpc_sendrawtransaction(self, params: Any) -> Any:
        p = _bind("sendrawtransaction", params, ("tx", "allowhighfees"), ("tx",))
        args: list[Any] = [p["tx"]]
        if p.get("allowhighfees"):
            args.append(0)
        try:
            await self._bitcoind("sendrawtransaction", *args)
        except ChainRpcError as e:
            return {"success": False, "errmsg": f"error code: {e.code}\nerror message:\n{e.message}\n"}
        return {"success": True, "errmsg": ""}

    # ---- the node's on-chain wallet, kept in a bitcoind wallet of its own ------------------------
    #
    # lightningd's wallet is its own (hsmd keys, a SQLite outputs table with reservations). Here the
    # keys and the signing are a bitcoind descriptor wallet per node; coin selection and reservations
    # are the stand-in's, with lightningd's rules: a reservation holds until `reserved_to_block`, and
    # `signpsbt` signs only reserved coins.

    async def _wallet(self, method: str, *args: Any) -> Any:
        if self.net.bitcoind is None:
            raise CliError(-32603, "this harness has no bitcoind attached")
        if self._wallet_rpc is None:
            name = f"{self.net.base_dir.name}-l{self.index}"
            await asyncio.to_thread(self.net.bitcoind.call, "createwallet", name)
            self._wallet_rpc = self.net.bitcoind.for_wallet(name)
        rpc = self._wallet_rpc
        return await asyncio.to_thread(rpc.call, method, *args)

    async def _height(self) -> int:
        return int(await self._bitcoind("getblockcount"))

    def _reserved(self, outpoint: tuple[str, int], height: int) -> bool:
        return self.reservations.get(outpoint, 0) > height

    async def _wallet_utxos(self, minconf: int = 0) -> list[dict[str, Any]]:
        return list(await self._wallet("listunspent", minconf, 9_999_999, [], True))

    async def _rpc_newaddr(self, params: Any) -> Any:
        p = _bind("newaddr", params, ("addresstype",), ())
        kind = p.get("addresstype") or "p2tr"
        if kind not in ("p2tr", "bech32"):
            # "all" would need one key behind two address kinds, which a bitcoind wallet does not give
            raise CliError(INVALID_PARAMS, f"addresstype: Invalid address type (must be bech32, p2tr): '{kind}'")
        address = await self._wallet("getnewaddress", "", "bech32m" if kind == "p2tr" else "bech32")
        return {kind: address}

    async def _rpc_listfunds(self, params: Any) -> Any:
        p = _bind("listfunds", params, ("spent",), ())
        if p.get("spent"):
            raise CliError(INVALID_PARAMS, "spent: this stand-in lists unspent outputs only")
        height = await self._height()
        outputs = []
        for u in await self._wallet_utxos():
            op = (u["txid"], int(u["vout"]))
            entry: dict[str, Any] = {
                "txid": u["txid"],
                "output": op[1],
                "amount_msat": _sats(u["amount"]) * 1000,
                "scriptpubkey": u["scriptPubKey"],
                "address": u["address"],
                "status": "confirmed" if u["confirmations"] > 0 else "unconfirmed",
                "reserved": self._reserved(op, height),
            }
            if u["confirmations"] > 0:
                entry["blockheight"] = height - u["confirmations"] + 1
            if entry["reserved"]:
                entry["reserved_to_block"] = self.reservations[op]
            outputs.append(entry)
        return {"outputs": outputs, "channels": []}

    async def _rpc_fundpsbt(self, params: Any) -> Any:
        names = (
            "satoshi",
            "feerate",
            "startweight",
            "minconf",
            "reserve",
            "locktime",
            "min_witness_weight",
            "excess_as_change",
            "nonwrapped",
            "opening_anchor_channel",
        )
        p = _bind("fundpsbt", params, names, ("satoshi", "feerate", "startweight"))
        want = _sat_or_all("satoshi", p["satoshi"])
        perkw = _feerate("feerate", p["feerate"])
        startweight = _u32("startweight", p["startweight"])
        minconf = _u32("minconf", p.get("minconf", 1))
        reserve = _u32("reserve", p.get("reserve", 72))
        min_witness = _u32("min_witness_weight", p.get("min_witness_weight", 0))
        height = await self._height()
        locktime = _u32("locktime", p.get("locktime", height))
        for flag in ("excess_as_change", "nonwrapped", "opening_anchor_channel"):
            if p.get(flag) is not None and not isinstance(p[flag], bool):
                raise CliError(INVALID_PARAMS, f"{flag}: should be 'true' or 'false': invalid token '{p[flag]}'")
        available = [
            u
            for u in await self._wallet_utxos(minconf)
            if not self._reserved((u["txid"], int(u["vout"])), height)
            and not (p.get("nonwrapped") and bytes.fromhex(u["scriptPubKey"])[:1] == b"\xa9")
        ]
        self.net.wallet_rng.shuffle(available)  # lightningd picks its coins in random order
        chosen: list[dict[str, Any]] = []
        total = 0
        weight = startweight
        for u in available:
            if want is not None and total >= want + perkw * weight // 1000:
                break
            chosen.append(u)
            total += _sats(u["amount"])
            weight += max(_input_weight(bytes.fromhex(u["scriptPubKey"])), min_witness + 164)
        fee = perkw * weight // 1000
        if want is not None and total < want + fee:
            short = want + fee - total
            raise CliError(
                301, f"Could not afford {want}sat using all {len(available)} available UTXOs: {short}sat short"
            )
        if not chosen:
            raise CliError(301, "Could not afford anything using all 0 available UTXOs")
        excess = total - fee - (want if want is not None else 0)
        outputs: list[CTxOut] = []
        change_outnum = None
        if p.get("excess_as_change"):
            change_fee = perkw * CHANGE_WEIGHT // 1000
            if excess - change_fee >= DUST_LIMIT:
                address = await self._wallet("getrawchangeaddress", "bech32m")
                outputs.append(CTxOut(excess - change_fee, CScript(script_from_address(address, "regtest"))))
                change_outnum, excess = 0, 0
        vin = [CTxIn(COutPoint(lx(u["txid"]), int(u["vout"])), nSequence=0xFFFFFFFD) for u in chosen]
        psbt = Psbt.from_unsigned_tx(CTransaction(vin, outputs, locktime, 2))
        for inp, u in zip(psbt.inputs, chosen, strict=True):
            prev = await self._wallet("gettransaction", u["txid"])
            inp.set(PSBT_IN_NON_WITNESS_UTXO, bytes.fromhex(prev["hex"]))
            inp.witness_utxo = CTxOut(_sats(u["amount"]), CScript(bytes.fromhex(u["scriptPubKey"])))
        result: dict[str, Any] = {
            "psbt": psbt.to_base64(),
            "feerate_per_kw": perkw,
            "estimated_final_weight": weight + 4 * 43 * len(outputs),
            "excess_msat": excess * 1000,
        }
        if change_outnum is not None:
            result["change_outnum"] = change_outnum
        if reserve:
            result["reservations"] = []
            for u in chosen:
                op = (u["txid"], int(u["vout"]))
                self.reservations[op] = height + reserve
                result["reservations"].append(
                    {
                        "txid": op[0],
                        "vout": op[1],
                        "was_reserved": False,
                        "reserved": True,
                        "reserved_to_block": height + reserve,
                    }
                )
        return result

    async def _rpc_unreserveinputs(self, params: Any) -> Any:
        p = _bind("unreserveinputs", params, ("psbt", "reserve"), ("psbt",))
        psbt = _psbt("psbt", p["psbt"])
        reserve = _u32("reserve", p.get("reserve", 72))
        height = await self._height()
        mine = {(u["txid"], int(u["vout"])) for u in await self._wallet_utxos()}
        out = []
        for txin in psbt.tx.vin:
            op = (b2lx(txin.prevout.hash), txin.prevout.n)
            if op not in mine or not self._reserved(op, height):
                continue
            until = self.reservations[op] - reserve
            entry: dict[str, Any] = {"txid": op[0], "vout": op[1], "was_reserved": True, "reserved": until > height}
            if until > height:
                self.reservations[op] = until
                entry["reserved_to_block"] = until
            else:
                del self.reservations[op]
            out.append(entry)
        return {"reservations": out}

    async def _rpc_signpsbt(self, params: Any) -> Any:
        p = _bind("signpsbt", params, ("psbt", "signonly"), ("psbt",))
        psbt = _psbt("psbt", p["psbt"])
        only = p.get("signonly")
        if only is not None:
            if not isinstance(only, list):
                raise CliError(INVALID_PARAMS, f"signonly: should be an array: invalid token '{only}'")
            only = [_u32("signonly", n) for n in only]
            for i, n in enumerate(only):
                if n >= len(psbt.inputs):
                    raise CliError(INVALID_PARAMS, f"signonly[{i}]: {n} out of range")
        height = await self._height()
        mine = {(u["txid"], int(u["vout"])) for u in await self._wallet_utxos()}
        ours = []
        for i, txin in enumerate(psbt.tx.vin):
            if only is not None and i not in only:
                continue
            op = (b2lx(txin.prevout.hash), txin.prevout.n)
            if op not in mine:
                if only is not None:
                    raise CliError(
                        -1, f"Aborting PSBT signing. UTXO {op[0]}:{op[1]} is unknown (and specified by signonly)"
                    )
                continue
            if not self._reserved(op, height):
                raise CliError(-1, f"Aborting PSBT signing. UTXO {op[0]}:{op[1]} is not reserved")
            ours.append(i)
        if not ours:
            raise CliError(
                -1,
                "No wallet inputs to sign. Are you sure you added inputs to this PSBT? "
                "If not, then there is no need to sign it.",
            )
        processed = await self._wallet("walletprocesspsbt", psbt.to_base64(), True, "DEFAULT", True, False)
        signed = Psbt.from_base64(processed["psbt"])
        for i, inp in enumerate(signed.inputs):  # the hsm signs the inputs chosen, nothing else
            if i not in ours:
                signed.inputs[i] = psbt.inputs[i]
            elif inp.tap_key_sig is None and not inp.entries(PSBT_IN_PARTIAL_SIG):
                raise CliError(INVALID_PARAMS, f"HSM gave bad sign_withdrawal_reply: input {i} unsigned")
        return {"signed_psbt": signed.to_base64()}

    # ---- custom messages in ------------------------------------------------------------------

    def enqueue(self, peer_id: str, payload: bytes) -> None:
        self._inbox.put_nowait((peer_id, payload.hex()))

    async def _deliver_inbox(self) -> None:
        assert self.manifest is not None
        while True:
            peer, payload = await self._inbox.get()
            if "custommsg" not in self.manifest.hooks or not self.alive:
                continue
            params = {"payload": payload, "peer_id": peer}
            self.hook_calls.append(params)
            try:
                raw = await self._request("custommsg", params, timeout=self.net.hook_timeout)
            except TimeoutError:
                self.fatal.append("custommsg hook did not answer")
                continue
            except PluginDied:
                return
            if raw.get("result") != {"result": "continue"}:
                self.fatal.append(f"Plugin returned an invalid response to the custommsg hook: {raw}")
            self.net.counts.delivered += 1


class SimNetwork:
    """Several nodes, their links, and the fault model of the links."""

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        bitcoind: BitcoindRpc | None = None,
        faults: Faults | None = None,
        seed: int = 1,
        hook_timeout: float = 30.0,
    ) -> None:
        # Unix socket paths are limited to ~107 bytes: keep the tree short.
        self.base_dir = Path(tempfile.mkdtemp(prefix="clnsim", dir=base_dir or "/tmp"))
        self.bitcoind = bitcoind
        self.faults = faults or Faults()
        self.seed = seed
        self.hook_timeout = hook_timeout
        self.nodes: list[SimNode] = []
        self.counts = FaultCounts()
        self._rng = random.Random(self.faults.seed)
        self.wallet_rng = random.Random(seed)
        self._timers: set[asyncio.Task[None]] = set()

    async def add_node(
        self, plugin: str | Path, options: dict[str, Any] | None = None, *, start: bool = True
    ) -> SimNode:
        node = SimNode(self, len(self.nodes) + 1, Path(plugin).resolve(), options or {})
        self.nodes.append(node)
        if start:
            await node.start()
        return node

    def node_by_id(self, node_id: str) -> SimNode | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    async def connect(self, a: SimNode, b: SimNode) -> None:
        if b.node_id in a.peers:
            return
        a.peers[b.node_id] = "out"
        b.peers[a.node_id] = "in"
        await a._notify(
            "connect",
            {
                "connect": {
                    "id": b.node_id,
                    "direction": "out",
                    "address": {"type": "ipv4", "address": "127.0.0.1", "port": b.port},
                }
            },
        )
        await b._notify(
            "connect",
            {
                "connect": {
                    "id": a.node_id,
                    "direction": "in",
                    "address": {"type": "ipv4", "address": "127.0.0.1", "port": 41230 + a.index},
                }
            },
        )
        for dst, src in ((b, a), (a, b)):
            blob = hashlib.sha256(f"{src.node_id}{dst.node_id}".encode()).digest() * 2
            dst.enqueue(src.node_id, wire.PEER_STORAGE_ON_CONNECT.to_bytes(2, "big") + b"\x00\x39" + blob[:57])

    async def block_added(self) -> dict[str, Any]:
        """Tell every running plugin about bitcoind's tip, as lightningd does for each new block."""
        if self.bitcoind is None:
            raise ValueError("no bitcoind attached")
        height = await asyncio.to_thread(self.bitcoind.call, "getblockcount")
        blockhash = await asyncio.to_thread(self.bitcoind.call, "getblockhash", height)
        params = {"block_added": {"hash": blockhash, "height": height}}
        for node in self.nodes:
            if node.running and node.alive:
                await node._notify("block_added", params)
        return params

    async def disconnect(self, a: SimNode, b: SimNode) -> None:
        if b.node_id not in a.peers:
            return
        del a.peers[b.node_id]
        b.peers.pop(a.node_id, None)
        for x, y in ((a, b), (b, a)):
            if x.alive and x.manifest is not None:
                with contextlib.suppress(PluginDied):
                    await x._notify("disconnect", {"disconnect": {"id": y.node_id}})

    async def route(self, src: SimNode, dst: SimNode, msg: bytes) -> None:
        """Hand one custom message to the link: maybe lost, late, or the link torn down."""
        self.counts.sent += 1
        if int.from_bytes(msg[:2], "big") % 2 == 0:
            # An unknown even type makes the receiving peer hang up (BOLT 1: "it's OK to be odd").
            await self.disconnect(dst, src)
            return
        f = self.faults
        if f.disconnect and self._rng.random() < f.disconnect:
            self.counts.disconnects += 1
            await self.disconnect(src, dst)
            return
        if f.drop and self._rng.random() < f.drop:
            self.counts.dropped += 1
            return
        if f.delay and self._rng.random() < f.delay:
            self.counts.delayed += 1
            wait = self._rng.uniform(0, f.max_delay)
            task = asyncio.create_task(self._late(src, dst, msg, wait))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)
            return
        dst.enqueue(src.node_id, msg)

    async def _late(self, src: SimNode, dst: SimNode, msg: bytes, wait: float) -> None:
        await asyncio.sleep(wait)
        if src.node_id in dst.peers:  # a message in flight dies with its link
            dst.enqueue(src.node_id, msg)

    async def close(self) -> None:
        for task in list(self._timers):
            task.cancel()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                await node.stop(timeout=5)

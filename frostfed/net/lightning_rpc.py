"""An asyncio JSON-RPC client for lightningd's unix socket (`<lightning-dir>/lightning-rpc`).

pyln-client's `LightningRpc` is blocking and shares a request counter, so calls from the plugin's
background loop go through this instead: one short connection per call, nothing shared but the path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any


class LightningRpcError(Exception):
    """lightningd answered with a JSON-RPC error, or the socket failed (code None)."""

    def __init__(self, method: str, code: int | None, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message}" if code is None else f"{method}: {code}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class LightningRpc:
    def __init__(self, socket_path: str | Path, *, caller: str = "frostfed", timeout: float = 60.0) -> None:
        self.socket_path = str(socket_path)
        self.caller = caller
        self.timeout = timeout
        self._ids = itertools.count(1)

    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        rid = f"{self.caller}:{method}#{next(self._ids)}"
        if isinstance(params, dict):
            params = {k: v for k, v in params.items() if v is not None}
        request = {
            "jsonrpc": "2.0",
            "id": rid,
            "method": method,
            "params": params if params is not None else {},
        }
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=1 << 26)
                try:
                    writer.write(json.dumps(request).encode())
                    await writer.drain()
                    answer = await self._read_answer(reader, rid)
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError) as e:
            raise LightningRpcError(method, None, f"lightningd RPC unavailable: {type(e).__name__}: {e}") from e
        if "error" in answer:
            err = answer["error"] if isinstance(answer["error"], dict) else {"message": str(answer["error"])}
            raise LightningRpcError(method, err.get("code", -1), str(err.get("message", "")), err.get("data"))
        if "result" not in answer:
            raise LightningRpcError(method, None, "malformed answer without result")
        return answer["result"]

    @staticmethod
    async def _read_answer(reader: asyncio.StreamReader, rid: str) -> dict[str, Any]:
        decoder = json.JSONDecoder()
        buf = ""
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                raise ConnectionError("lightningd closed the RPC connection")
            buf += chunk.decode()
            while True:
                buf = buf.lstrip()
                try:
                    obj, end = decoder.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                if isinstance(obj, dict) and obj.get("id") == rid:
                    return obj  # anything else (notifications) is skipped

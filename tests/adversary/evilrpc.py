"""The attacker's control socket: JSON-RPC 2.0, one object per line (the framing of
frostfed/plugin/rpcserver.py, so `frostfed.plugin.rpcclient.call` drives it).

Commands live in `COMMANDS`; a test module adds its own with `@command("name")`. A handler gets the
attacker member and the params object and returns any JSON value; an exception becomes an error reply
with its message (the attacker keeps running)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("adversary")

SOCKET_NAME = "evil-rpc"
Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


class EvilRpcServer:
    def __init__(self, member: Any, path: Path) -> None:
        self.member = member
        self.path = path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=1 << 24)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            rid, method, params = req.get("id"), req["method"], req.get("params") or {}
        except Exception:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "bad request"}}
        handler = COMMANDS.get(method)
        if handler is None:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no command {method!r}"}}
        try:
            return {"jsonrpc": "2.0", "id": rid, "result": await handler(self.member, params)}
        except Exception as e:
            log.exception("evil command %s failed", method)
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -1, "message": f"{type(e).__name__}: {e}"}}

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if line.strip():
                    writer.write(json.dumps(await self._answer(line)).encode() + b"\n")
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

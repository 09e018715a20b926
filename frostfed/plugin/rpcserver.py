"""The standalone daemon's control socket: JSON-RPC 2.0, one object per line, on a unix socket in
the data directory (so only local users with access to that directory can drive the member).

Every request goes through `commands.dispatch`, the same path the Core Lightning plugin takes.
Malformed input gets a JSON-RPC error and the connection stays usable; nothing a client sends can
stop the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from frostfed.federation import commands

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
MAX_LINE = 8 * 1024 * 1024


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


async def handle_line(service: Any, line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except ValueError:
        return _error(None, PARSE_ERROR, "request is not valid JSON")
    if not isinstance(req, dict):
        return _error(None, commands.INVALID_REQUEST, "request must be a JSON object")
    rid = req.get("id")
    method = req.get("method")
    if not isinstance(method, str):
        return _error(rid, commands.INVALID_REQUEST, "request has no method")
    params = req.get("params")
    if params is not None and not isinstance(params, list | dict):
        return _error(rid, commands.INVALID_PARAMS, "params must be a list or an object")
    try:
        result = await commands.dispatch(service, method, params)
    except commands.RpcError as e:
        if e.code == commands.INTERNAL_ERROR:
            log.exception("command %s failed", method)
        return {"jsonrpc": "2.0", "id": rid, "error": e.to_json()}
    return {"jsonrpc": "2.0", "id": rid, "result": result}


class RpcServer:
    def __init__(self, service: Any, path: Path) -> None:
        self.service = service
        self.path = path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(json.dumps(_error(None, PARSE_ERROR, "request too large")).encode() + b"\n")
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                reply = await handle_line(self.service, line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

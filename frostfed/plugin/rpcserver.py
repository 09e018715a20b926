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
import tempfile
from pathlib import Path
from typing import Any

from frostfed.federation import commands
from frostfed.plugin.socketpath import SocketPathError, usable

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
MAX_LINE = 8 * 1024 * 1024


def _error(rid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}}


async def handle_line(service: Any, line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser
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


def _reply_line(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply).encode() + b"\n"
    except (TypeError, ValueError, RecursionError):  # a result that is not JSON: a bug, not the client's
        log.exception("reply to request %r is not JSON", reply.get("id"))
        return json.dumps(_error(reply.get("id"), commands.INTERNAL_ERROR, "the reply is not JSON")).encode() + b"\n"


class SocketInUse(Exception):
    """Another daemon answers on the control socket: two members must not share a data directory."""


class RpcServer:
    def __init__(self, service: Any, path: Path) -> None:
        self.service = service
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if self.path.exists():
            try:
                with usable(self.path) as name:
                    _, w = await asyncio.open_unix_connection(name)
            except SocketPathError:
                raise
            except OSError:  # a socket left by a daemon that died: take it over
                self.path.unlink()
            else:
                w.close()
                raise SocketInUse(f"another frostfed daemon is running on {self.path}")
        # Bound in a directory only the owner can enter, made owner-only, then moved into place: no
        # other local user can connect in between (the data directory itself may be world-readable).
        private = Path(tempfile.mkdtemp(prefix=".r", dir=self.path.parent))  # no longer than the final name
        try:
            staged = private / "s"
            with usable(staged) as name:
                self._server = await asyncio.start_unix_server(self._client, path=name, limit=MAX_LINE)
            os.chmod(staged, 0o600)
            os.replace(staged, self.path)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(private)

    async def close(self) -> None:
        """Stop listening and hang up on connected clients (a waiting CLI gets EOF, not a hang)."""
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
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
                try:
                    reply = await handle_line(self.service, line)
                except Exception:  # whatever a command does, the client gets an answer
                    log.exception("request failed")
                    reply = _error(None, commands.INTERNAL_ERROR, "internal error")
                writer.write(_reply_line(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

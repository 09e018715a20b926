"""Client of a daemon's control socket, for the `frostfed` CLI, the demo and the tests."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

from frostfed.plugin.socketpath import usable

_ids = itertools.count(1)
PARSE_ERROR = -32700
INVALID_REPLY = -32603


class RpcCallError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


def call(
    path: str | Path, method: str, params: list[Any] | dict[str, Any] | None = None, timeout: float = 600.0
) -> Any:
    req = {
        "jsonrpc": "2.0",
        "id": next(_ids),
        "method": method,
        "params": params if params is not None else [],
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        with usable(Path(path)) as name:
            s.connect(name)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            buf += chunk
    try:
        reply = json.loads(buf)
    except (ValueError, RecursionError):
        raise RpcCallError(PARSE_ERROR, "the daemon's reply is not JSON") from None
    if not isinstance(reply, dict) or ("error" in reply) == ("result" in reply):
        raise RpcCallError(INVALID_REPLY, "the daemon's reply is neither a result nor an error")
    if "error" in reply:
        e = reply["error"]
        if not isinstance(e, dict):
            raise RpcCallError(INVALID_REPLY, f"the daemon sent a malformed error: {str(e)[:200]}")
        code = e.get("code")
        raise RpcCallError(
            code if isinstance(code, int) and not isinstance(code, bool) else INVALID_REPLY,
            str(e.get("message", "")),
            e.get("data"),
        )
    return reply["result"]

"""Client of a daemon's control socket, for the `frostfed` CLI, the demo and the tests."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

_ids = itertools.count(1)


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
        s.connect(str(path))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            buf += chunk
    reply = json.loads(buf)
    if "error" in reply:
        e = reply["error"]
        raise RpcCallError(e.get("code", 0), e.get("message", ""), e.get("data"))
    return reply["result"]

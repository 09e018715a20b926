"""A JSON-RPC client for lightningd's unix socket (`<lightning-dir>/lightning-rpc`).

pyln-client's `LightningRpc` is blocking and shares a request counter, so the project has its own: one
short connection per call, nothing shared but the path and a counter. `call` serves the plugin's
asyncio loop; `call_blocking` serves code that runs in worker threads (the chain source and the node
wallet behind `bitcoin.cln_chain.LightningSocket`). Both send the same request and read the answer the
same way. It sits at the package's top, below every layer, so that `bitcoin/` and `plugin/` (and `net/`,
whose custom-message channel takes any client with a `call`) use one client while every dependency still
points down.

A unix socket address holds at most 107 bytes, and `<lightning-dir>/<network>/lightning-rpc` is often
longer (pyln-testing's directories always are). A longer path is reached through a descriptor of its
directory, `/proc/self/fd/<fd>/lightning-rpc`, as pyln-client does: a `chdir` would move every thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

READ_SIZE = 1 << 16
MAX_UNIX_PATH = 107
"""sun_path holds 108 bytes, the last one a NUL."""


class LightningRpcError(Exception):
    """lightningd answered with a JSON-RPC error, or the socket failed (code None)."""

    def __init__(self, method: str, code: int | None, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: {message}" if code is None else f"{method}: {code}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class _AnswerReader:
    """Picks the answer to one request out of what lightningd writes on the connection."""

    def __init__(self, rid: str) -> None:
        self._rid = rid
        self._decoder = json.JSONDecoder()
        self._buf = ""

    def feed(self, chunk: bytes) -> dict[str, Any] | None:
        """The answer, once `chunk` completes it; None while more is needed."""
        if not chunk:
            raise ConnectionError("lightningd closed the RPC connection")
        self._buf += chunk.decode()
        while True:
            self._buf = self._buf.lstrip()
            try:
                obj, end = self._decoder.raw_decode(self._buf)
            except ValueError:
                return None
            self._buf = self._buf[end:]
            if isinstance(obj, dict) and obj.get("id") == self._rid:
                return obj  # anything else (notifications) is skipped


class LightningRpc:
    def __init__(self, socket_path: str | Path, *, caller: str = "frostfed", timeout: float = 60.0) -> None:
        self.socket_path = str(socket_path)
        self.caller = caller
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._connect_path = self.socket_path
        self._dir_fd: int | None = None
        if len(os.fsencode(self.socket_path)) > MAX_UNIX_PATH:
            directory, name = os.path.split(self.socket_path)
            try:
                self._dir_fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                pass  # connecting will fail with the path's own error
            else:
                self._connect_path = f"/proc/self/fd/{self._dir_fd}/{name}"

    def close(self) -> None:
        """Release the directory descriptor a long socket path is reached through."""
        fd, self._dir_fd = self._dir_fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    async def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        rid, request = self._request(method, params)
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self._connect_path, limit=1 << 26)
                try:
                    writer.write(request)
                    await writer.drain()
                    answers = _AnswerReader(rid)
                    answer = None
                    while answer is None:
                        answer = answers.feed(await reader.read(READ_SIZE))
                finally:
                    writer.close()
        except (OSError, TimeoutError, ValueError) as e:
            raise _unavailable(method, e) from e
        return _result(method, answer)

    def call_blocking(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        """`call` for code outside the event loop (any thread); `timeout` bounds each socket operation."""
        rid, request = self._request(method, params)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self._connect_path)
                s.sendall(request)
                answers = _AnswerReader(rid)
                answer = None
                while answer is None:
                    answer = answers.feed(s.recv(READ_SIZE))
        except (OSError, ValueError) as e:
            raise _unavailable(method, e) from e
        return _result(method, answer)

    def _request(self, method: str, params: dict[str, Any] | list[Any] | None) -> tuple[str, bytes]:
        with self._ids_lock:
            rid = f"{self.caller}:{method}#{next(self._ids)}"
        if isinstance(params, dict):
            params = {k: v for k, v in params.items() if v is not None}
        request = {
            "jsonrpc": "2.0",
            "id": rid,
            "method": method,
            "params": params if params is not None else {},
        }
        return rid, json.dumps(request).encode()


def _unavailable(method: str, e: Exception) -> LightningRpcError:
    return LightningRpcError(method, None, f"lightningd RPC unavailable: {type(e).__name__}: {e}")


def _result(method: str, answer: dict[str, Any]) -> Any:
    if "error" in answer:
        err = answer["error"] if isinstance(answer["error"], dict) else {"message": str(answer["error"])}
        code = err.get("code")
        code = code if isinstance(code, int) else -1
        raise LightningRpcError(method, code, str(err.get("message", "")), err.get("data"))
    if "result" not in answer:
        raise LightningRpcError(method, None, "malformed answer without result")
    return answer["result"]

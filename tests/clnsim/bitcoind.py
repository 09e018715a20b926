"""A small synchronous bitcoind JSON-RPC client (cookie or user/password), one HTTP request per call.

The stand-in lightningd answers its chain calls from a real regtest bitcoind through this, the way
lightningd's `bcli` plugin does through `bitcoin-cli`.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class BitcoindError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BitcoindRpc:
    """`call(method, *params)`; thread-safe (no shared connection)."""

    def __init__(
        self,
        url: str,
        *,
        cookie: str | Path | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.url = url
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 18443
        self.cookie = Path(cookie) if cookie else None
        self.user = user
        self.password = password
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Lock()

    def credentials(self) -> tuple[str, str]:
        if self.cookie is not None:
            user, _, password = self.cookie.read_text().strip().partition(":")
            return user, password
        if self.user is None or self.password is None:
            raise BitcoindError(-1, "no bitcoind credentials")
        return self.user, self.password

    def call(self, method: str, *params: Any) -> Any:
        with self._lock:
            rid = next(self._ids)
        body = json.dumps(
            {"jsonrpc": "1.0", "id": rid, "method": method, "params": list(params)}, default=str
        )
        user, password = self.credentials()
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        req = urllib.request.Request(
            self.url,
            data=body.encode(),
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                answer = json.loads(resp.read(), parse_float=Decimal)
        except urllib.error.HTTPError as e:  # bitcoind answers RPC errors with HTTP 500 and a JSON body
            try:
                answer = json.loads(e.read(), parse_float=Decimal)
            except ValueError:
                raise BitcoindError(-1, f"HTTP {e.code}") from None
        if answer.get("error"):
            raise BitcoindError(answer["error"]["code"], answer["error"]["message"])
        return answer["result"]

"""A private regtest bitcoind for tests and for `frostfed demo`: loopback only, no peers, stopped by PID.

`locate_bitcoind()` finds the binary the way `regtest/install-bitcoind.sh` does (BITCOIND, then PATH,
then the project's `.cache/bitcoin/bin`, running the script when it is there and nothing was found).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from frostfed.bitcoin.chain import SATS_PER_BTC, BitcoindChainSource, BitcoindRpc, ChainError, btc_to_sats

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = PROJECT_ROOT / "regtest" / "install-bitcoind.sh"


class BitcoindNotFound(RuntimeError):
    pass


class BitcoindStartError(RuntimeError):
    pass


def locate_bitcoind(install: bool = True) -> str:
    """Path of a runnable bitcoind (see the module docstring for the order of preference)."""
    env = os.environ.get("BITCOIND")
    if env:
        return env
    found = shutil.which("bitcoind")
    if found:
        return found
    cached = PROJECT_ROOT / ".cache" / "bitcoin" / "bin" / "bitcoind"
    if cached.exists():
        return str(cached)
    if install and INSTALL_SCRIPT.exists():
        proc = subprocess.run(["sh", str(INSTALL_SCRIPT)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BitcoindNotFound(proc.stderr.strip() or f"{INSTALL_SCRIPT} failed")
        return str(Path(proc.stdout.strip().splitlines()[-1]) / "bitcoind")
    raise BitcoindNotFound(
        "no bitcoind: put one on PATH, set BITCOIND, or run regtest/install-bitcoind.sh from the project"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegtestBitcoind:
    """One regtest bitcoind process in its own data directory.

    It accepts no peers (`listen=0`, no DNS or fixed seeds) and serves RPC on 127.0.0.1 only, with cookie
    authentication. `start()` waits until RPC answers; `stop()` asks it to stop and, failing that,
    terminates the process it started, by PID.
    """

    def __init__(
        self,
        datadir: Path | str,
        bitcoind: str | None = None,
        rpc_port: int | None = None,
        extra_conf: Sequence[str] = (),
    ):
        self.datadir = Path(datadir)
        self.extra_conf = list(extra_conf)
        self.bitcoind = bitcoind or locate_bitcoind()
        self.rpc_port = rpc_port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.rpc_client = BitcoindRpc(
            "127.0.0.1", self.rpc_port, cookie_file=self.datadir / "regtest" / ".cookie", timeout=60
        )

    def _write_config(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        conf = [
            "regtest=1",
            "server=1",
            "listen=0",  # Knots refuses -bind with listen=0; without listening there is nothing to bind
            "dnsseed=0",
            "fixedseeds=0",
            "discover=0",
            "upnp=0",
            "natpmp=0",
            "txindex=0",
            "fallbackfee=0.0002",
            "printtoconsole=0",
            "[regtest]",
            f"rpcport={self.rpc_port}",
            "rpcbind=127.0.0.1",
            "rpcallowip=127.0.0.1",
            f"port={free_port()}",
            *self.extra_conf,
        ]
        (self.datadir / "bitcoin.conf").write_text("\n".join(conf) + "\n")

    def start(self, timeout: float = 60.0) -> None:
        self._write_config()
        log = open(self.datadir / "bitcoind.out", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen([self.bitcoind, f"-datadir={self.datadir}"], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BitcoindStartError(f"bitcoind exited with {self.proc.returncode} at start-up: {self._log_tail()}")
            try:
                self.rpc_client.call("getblockcount")
                return
            except ChainError as e:  # still warming up: cookie missing, connection refused, -28
                last = e
                time.sleep(0.1)
        self.stop()
        raise BitcoindStartError(f"bitcoind did not answer RPC within {timeout} s ({last}): {self._log_tail()}")

    def _log_tail(self) -> str:
        for name in ("regtest/debug.log", "bitcoind.out"):
            try:
                lines = (self.datadir / name).read_text(errors="replace").splitlines()
            except OSError:
                continue
            if lines:
                return " | ".join(lines[-5:])
        return "(no log)"

    def rpc(self, method: str, *params: Any, wallet: str | None = None) -> Any:
        client = self.rpc_client if wallet is None else self.rpc_client.for_wallet(wallet)
        return client.call(method, *params)

    def chain_source(self) -> BitcoindChainSource:
        return BitcoindChainSource(self.rpc_client)

    def create_mining_wallet(self, name: str = "miner", blocks: int = 101) -> str:
        """A wallet named `name` with `blocks` blocks mined to it (101 makes the first coinbase spendable)."""
        self.rpc("createwallet", name)
        address = self.rpc("getnewaddress", wallet=name)
        self.rpc("generatetoaddress", blocks, address)
        return address

    def mine(self, blocks: int = 1, wallet: str = "miner") -> list[str]:
        return self.rpc("generatetoaddress", blocks, self.rpc("getnewaddress", wallet=wallet))

    def send_to(self, address: str, sats: int, confirm: bool = True, wallet: str = "miner") -> tuple[str, int]:
        """Pay `sats` to `address` from `wallet`; returns the new outpoint (mined in a block if `confirm`)."""
        txid = self.rpc("sendtoaddress", address, Decimal(sats) / SATS_PER_BTC, wallet=wallet)
        tx = self.rpc("getrawtransaction", txid, True)
        vout = next(
            o["n"]
            for o in tx["vout"]
            if o["scriptPubKey"].get("address") == address and btc_to_sats(o["value"]) == sats
        )
        if confirm:
            self.mine(1, wallet=wallet)
        return txid, vout

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            self.rpc_client.call("stop")
        except ChainError:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RegtestBitcoind:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

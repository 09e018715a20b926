"""A bitcoind on signet, testnet4 or mainnet with no peers at all, for checking network handling.

`-connect=0` and no listening, seeds or discovery: the node never talks to anyone and stays at its
genesis block, which is all a network check needs (the chain name and the address prefixes a real
node of that network accepts). Own data directory, random loopback RPC port, stopped by PID.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from frostfed.bitcoin.chain import BitcoindRpc, ChainError
from frostfed.bitcoin.regtest import free_port, locate_bitcoind

SUBDIR = {"main": "", "test": "testnet3", "testnet4": "testnet4", "signet": "signet", "regtest": "regtest"}


class ChainBitcoind:
    def __init__(self, datadir: Path, chain: str) -> None:
        self.datadir = datadir
        self.chain = chain
        self.rpc_port = free_port()
        self.cookie = datadir / SUBDIR[chain] / ".cookie"
        self.proc: subprocess.Popen[bytes] | None = None
        self.rpc = BitcoindRpc("127.0.0.1", self.rpc_port, cookie_file=self.cookie, timeout=30)

    def start(self, timeout: float = 60) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        section = "main" if self.chain == "main" else self.chain
        conf = [
            f"chain={self.chain}",
            f"[{section}]",
            "server=1",
            "connect=0",
            "listen=0",
            "dnsseed=0",
            "fixedseeds=0",
            "discover=0",
            "upnp=0",
            "natpmp=0",
            "printtoconsole=0",
            "disablewallet=1",
            f"rpcport={self.rpc_port}",
            "rpcbind=127.0.0.1",
            "rpcallowip=127.0.0.1",
            f"port={free_port()}",
        ]
        (self.datadir / "bitcoin.conf").write_text("\n".join(conf) + "\n")
        out = open(self.datadir / "bitcoind.out", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen([locate_bitcoind(), f"-datadir={self.datadir}"], stdout=out, stderr=out)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = (self.datadir / "bitcoind.out").read_text()
                raise RuntimeError(f"bitcoind -chain={self.chain} exited: {out}")
            try:
                self.rpc.call("getblockchaininfo")
                return
            except ChainError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"bitcoind -chain={self.chain} did not answer within {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.rpc.call("stop")
            self.proc.wait(30)
        except (ChainError, subprocess.TimeoutExpired):
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

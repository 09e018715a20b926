"""A federation of member processes on this machine: what the demo, the end-to-end tests and the
benchmarks start. Each member is a real `frostfed run` process with its own key file, config,
SQLite store and Noise listener on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frostfed.bitcoin.regtest import free_port
from frostfed.federation.identity import create_identity_file
from frostfed.plugin import rpcclient
from frostfed.plugin.daemon import SOCKET_NAME


@dataclass
class LocalMember:
    index: int
    id: bytes
    data_dir: Path
    config: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.data_dir / SOCKET_NAME

    def call(self, method: str, params: list[Any] | dict[str, Any] | None = None, timeout: float = 300) -> Any:
        return rpcclient.call(self.socket, method, params, timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, env: dict[str, str] | None = None, command: list[str] | None = None) -> None:
        """`command` replaces `python -m frostfed` (a wrapped daemon); `run --config` follows it."""
        if self.socket.exists():
            self.socket.unlink()
        log = open(self.data_dir / "stderr.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "frostfed"]), "run", "--config", str(self.config)],
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        log.close()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"member {self.index} exited: {self.stderr_tail()}")
            if self.socket.exists():
                try:
                    self.call("frost-status", timeout=5)
                    return
                except (OSError, rpcclient.RpcCallError):
                    pass
            time.sleep(0.05)
        raise TimeoutError(f"member {self.index} did not open its control socket")

    def stderr_tail(self) -> str:
        try:
            return (self.data_dir / "stderr.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def write_cluster(
    base: Path,
    n: int,
    t: int | None,
    bitcoind_port: int,
    cookie_file: Path,
    heartbeat: float = 0.5,
    offline_after: float = 3.0,
    policy: dict[str, Any] | None = None,
    membership: dict[str, Any] | None = None,
    first_index: int = 0,
    joining_contacts: list[LocalMember] | None = None,
    wallet: str = "frostfed",
    roast_grace: float | None = None,
) -> list[LocalMember]:
    """Config files and identities of `n` members of a new federation, or, with `joining_contacts`,
    of `n` nodes that will join the federation those members form."""
    base.mkdir(parents=True, exist_ok=True)
    members = []
    taken = {m.port for m in joining_contacts or []}
    for i in range(first_index, first_index + n):
        d = base / f"member{i}"
        d.mkdir(parents=True, exist_ok=True)
        ident = create_identity_file(d / "identity.key")
        port = free_port()
        while port in taken:  # the kernel may hand the same free port out twice in a row
            port = free_port()
        taken.add(port)
        members.append(LocalMember(i, ident.id, d, d / "frostfed.toml", port))
    listed = joining_contacts if joining_contacts is not None else members
    lines_members = "".join(
        f'[[federation.members]]\nid = "{m.id.hex()}"\naddress = "127.0.0.1:{m.port}"\n\n' for m in listed
    )
    mem_lines = "".join(f"{k} = {v!r}\n" for k, v in (membership or {}).items())
    pol = {"min_feerate": 1.0, "max_feerate": 50.0, "max_fee_sats": 50_000, **(policy or {})}
    pol_lines = "".join(f"{k} = {v!r}\n" if not isinstance(v, str) else f'{k} = "{v}"\n' for k, v in pol.items())
    for m in members:
        m.config.write_text(
            "[member]\n"
            'identity_key_file = "identity.key"\n'
            f'listen = "127.0.0.1:{m.port}"\n'
            'data_dir = "."\n'
            f"heartbeat_seconds = {heartbeat}\n"
            f"offline_after_seconds = {offline_after}\n"
            + (f"roast_grace_seconds = {roast_grace}\n" if roast_grace is not None else "")
            + ("joining = true\n" if joining_contacts is not None else "")
            + "\n"
            "[federation]\n" + (f"threshold = {t}\n" if t is not None else "") + "\n" + lines_members + "[bitcoind]\n"
            f'rpc_url = "http://127.0.0.1:{bitcoind_port}"\n'
            f'cookie_file = "{cookie_file}"\n'
            f'wallet = "{wallet}"\n\n'
            "[policy]\n" + pol_lines + "\n[membership]\n" + mem_lines
        )
    return members


def wait_for_epoch(members: list[LocalMember], timeout: float = 120, epoch: int | None = None) -> str:
    """Wait until every running member reports the same active epoch key (of `epoch`, if given)."""
    deadline = time.monotonic() + timeout
    keys: set[str | None] = set()
    while time.monotonic() < deadline:
        statuses = [m.call("frost-status", timeout=10) for m in members if m.running]
        keys = {s["group_key"] for s in statuses}
        if epoch is not None and any(s["epoch"] != epoch for s in statuses):
            keys.add(None)
        agreed = [k for k in keys if k is not None]
        if len(keys) == 1 and agreed:
            return agreed[0]
        time.sleep(0.2)
    raise TimeoutError(f"members did not agree on an epoch key: {keys}")

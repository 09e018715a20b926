"""A member process with injected faults: the real daemon (config, Noise, bitcoind, its share from the
real DKG) whose member misbehaves as told, so the end-to-end tests can prove ROAST copes with it.

- `bad-psig`: every partial signature it sends is random bytes (an invalid share, which the
  coordinator must detect and name).
- `delay-psig`: it answers a signing session only after 3 s (a member that stalls mid-signing).
- `slow-ready`: it answers a signing request only after 1 s (so ROAST's first session goes to others).
- `--latency-ms`: every message it sends waits that long (the benchmarks' round-trip time).

The faults wrap what the member sends; its judgement, nonce journal and store are the real ones.
Run as `python -m faulty_member --faults delay-psig run --config <file>` with `tests/` on PYTHONPATH;
`start_faulty` does that for a `LocalMember`."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from latency_channel import LatencyChannel

from frostfed.federation.config import load_config
from frostfed.federation.messages import Kind
from frostfed.federation.node import Member
from frostfed.net.channel import PeerId
from frostfed.plugin import daemon
from frostfed.plugin.localcluster import LocalMember

FAULTS = frozenset({"bad-psig", "delay-psig", "slow-ready"})
TESTS_DIR = Path(__file__).resolve().parent


class FaultyMember(Member):
    def __init__(self, *args: Any, faults: frozenset[str], latency_seconds: float = 0.0, **kw: Any) -> None:
        if latency_seconds > 0:
            kw["channel"] = LatencyChannel(kw["channel"], latency_seconds)
        super().__init__(*args, **kw)
        self.faults = faults

    async def _send(self, peer: PeerId, kind: str, body: dict[str, Any]) -> None:
        if kind == Kind.SIGN_READY and "slow-ready" in self.faults:
            await asyncio.sleep(1)
        if kind == Kind.SIGN_SHARE and "delay-psig" in self.faults:
            await asyncio.sleep(3)
        if kind == Kind.SIGN_SHARE and "bad-psig" in self.faults:
            body = {**body, "psigs": [os.urandom(32).hex() for _ in body["psigs"]]}
        await super()._send(peer, kind, body)


def command(faults: Iterable[str] = (), latency_ms: float = 0.0) -> list[str]:
    """The program a `LocalMember` runs instead of `python -m frostfed` (it appends `run --config`)."""
    faults = list(faults)
    unknown = set(faults) - FAULTS
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}")
    return [sys.executable, "-m", "faulty_member", "--faults", ",".join(faults), "--latency-ms", str(latency_ms)]


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def start_faulty(member: LocalMember, *faults: str, latency_ms: float = 0.0) -> None:
    member.start(environment(), command=command(faults, latency_ms))


def main() -> None:
    parser = argparse.ArgumentParser(prog="faulty_member")
    parser.add_argument("--faults", default="")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("cmd", choices=["run"])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    faults = frozenset(f for f in args.faults.split(",") if f)
    config = load_config(args.config)
    daemon.setup_logging(config.data_dir)
    daemon.Member = functools.partial(  # type: ignore[misc]
        FaultyMember, faults=faults, latency_seconds=args.latency_ms / 1000
    )
    asyncio.run(daemon.run(config))


if __name__ == "__main__":
    main()

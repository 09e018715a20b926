"""What the membership driver needs of the member it runs on: the narrow surface `node.Member`
provides (its store, chain, epoch and settings; its messages and tasks; the DKG it runs; the epoch it
activates; ROAST signing for a transition). Named here so the driver never imports the member."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from frostfed.bitcoin.chain import ChainSource
from frostfed.federation.chain_view import ChainView
from frostfed.federation.config import PolicySettings
from frostfed.federation.dkg_run import DkgResult, DkgRun
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.store import EpochRecord, Store

PeerId = bytes


class Host(Protocol):
    me: PeerId
    store: Store
    chain: ChainSource | None
    chain_view: ChainView
    network: str
    policy_settings: PolicySettings
    offline_after_seconds: float
    started: float
    rpc: Any  # the bitcoind RPC a proposer finds the federation's coins with (None: none)
    keys: EpochKeys | None
    members: list[PeerId]

    @property
    def _dkg(self) -> DkgRun | None: ...

    @property
    def dkg_attempts_seen(self) -> dict[int, int]: ...

    async def _send(self, peer: PeerId, kind: str, body: dict[str, Any]) -> None: ...

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def online(self, peer: PeerId) -> bool: ...

    def _start_dkg(self, epoch: int, members: list[PeerId], threshold: int, attempt: int) -> None: ...

    def stop_dkg(self) -> None: ...

    def epoch_record(self, result: DkgResult, epoch: int, status: str) -> EpochRecord: ...

    def _activate(self, rec: EpochRecord) -> None: ...

    async def request_signatures(
        self, req: SigningRequest, extra_inputs: dict[int, tuple[bytes, list[bytes]]] | None = None
    ) -> dict[str, Any]: ...

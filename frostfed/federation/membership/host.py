"""What the membership driver is handed beyond the member's context (`MemberContext`: identity, store,
chain, settings, messages, tasks): the DKG driver it starts a change's DKG on, the member's way of
making an epoch active, ROAST signing for a transition, the bitcoind RPC a proposer needs, and when the
member started. `node.Member` builds it; a test builds one around its own parts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from frostfed.bitcoin.chain import BitcoindRpc
from frostfed.federation.dkg_driver import DkgDriver
from frostfed.federation.progress import Wait
from frostfed.federation.signing_request import SigningRequest
from frostfed.federation.store import EpochRecord

ExtraInputs = dict[int, tuple[bytes, list[bytes]]]
RequestSignatures = Callable[[SigningRequest, ExtraInputs | None], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Hooks:
    dkg: DkgDriver
    activate: Callable[[EpochRecord], None]  # the epoch in `rec` becomes this member's active one
    request_signatures: RequestSignatures  # ROAST among the current members (roast_signing)
    no_answer: Callable[[Wait | None], str]  # who did not answer a step that timed out (progress)
    rpc: BitcoindRpc | None  # a proposer finds the federation's coins with it (None: it cannot propose)
    started: float  # when the member started: no peer counts as offline before its liveness window

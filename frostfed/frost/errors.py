"""The exception BIP 445 raises when a party sends a bad value.

BIP 445 distinguishes two kinds of failure: a `ValueError` when the caller's own input breaks a
precondition, and an `InvalidContributionError` when a protocol contribution from another party
(a signer's pubnonce or partial signature, the coordinator's aggregate nonce) is bad. The second kind
must name the culprit so an honest party can exclude it (identifiable abort, which ROAST relies on).
"""

from __future__ import annotations

from typing import Literal

ContribKind = Literal["aggothernonce", "aggnonce", "psig", "pubnonce", "pubshare"]

COORDINATOR_ID = None
"""The blamed `id` when the coordinator (not a signer) sent the bad value."""


class InvalidContributionError(Exception):
    """A party sent an invalid `contrib`.

    `id` is the participant identifier of the blamed signer, or `None` (COORDINATOR_ID) when the
    coordinator is to blame. `signer_index` is the position of the bad value in the list the
    function was given (what the BIP 445 test vectors record), or `None` for the coordinator.
    """

    def __init__(self, id: int | None, contrib: ContribKind, signer_index: int | None = None) -> None:
        self.id = id
        self.contrib = contrib
        self.signer_index = signer_index
        who = "the coordinator" if id is None else f"participant {id}"
        super().__init__(f"invalid {contrib} from {who}")

"""An epoch's key material as signing needs it: the ROAST threshold key, this member's share and
id, and the BIP32/BIP86 derivation that turns one DKG into any number of Taproot addresses.

Paths are `[0, i]` for receive addresses and `[1, i]` for change, as in a BIP86 account; every
member derives the same script for the same path, so a request only names paths and each member
recomputes (never trusts) the keys behind them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from frostfed.bitcoin.descriptor import with_checksum
from frostfed.bitcoin.networks import network
from frostfed.frost import derivation
from frostfed.frost.roast import SigningTask, ThresholdKey

RECEIVE = 0
CHANGE = 1
MAX_INDEX = 2**31 - 1


class PathError(ValueError):
    pass


def check_path(path: Sequence[int]) -> tuple[int, int]:
    """Paths arrive from the network and from PSBTs: anything but a list or tuple of two ints (no
    bools, no floats such as 1.0) is a PathError."""
    if (
        not isinstance(path, list | tuple)
        or len(path) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in path)
        or path[0] not in (RECEIVE, CHANGE)
        or not 0 <= path[1] <= MAX_INDEX
    ):
        raise PathError(f"derivation path {str(path)[:40]!r} is not [0|1, index]")
    return path[0], path[1]


@dataclass
class EpochKeys:
    epoch: int
    members: list[bytes]
    threshold: int
    group_key: bytes
    chain_code: bytes
    pubshares: list[bytes]
    network: str = "regtest"
    _root: derivation.ExtendedPubKey = field(init=False)

    def __post_init__(self) -> None:
        self._root = derivation.group_xpub(self.group_key, self.chain_code)
        self._tweaks = lru_cache(maxsize=4096)(self._tweaks_uncached)

    @property
    def roast_key(self) -> ThresholdKey:
        return ThresholdKey(len(self.members), self.threshold, self.group_key, tuple(self.pubshares))

    def member_index(self, member: bytes) -> int | None:
        try:
            return self.members.index(member)
        except ValueError:
            return None

    def _tweaks_uncached(self, chain: int, index: int) -> tuple[tuple[bytes, ...], tuple[bool, ...], bytes]:
        tweaks, modes, out = derivation.signing_tweaks(self._root, [chain, index])
        return tuple(tweaks), tuple(modes), out

    def output_key(self, path: Sequence[int]) -> bytes:
        return self._tweaks(*check_path(path))[2]

    def script(self, path: Sequence[int]) -> bytes:
        return b"\x51\x20" + self.output_key(path)

    def task(self, path: Sequence[int], sighash: bytes) -> SigningTask:
        tweaks, modes, _ = self._tweaks(*check_path(path))
        return SigningTask(sighash, tweaks, modes)

    def fingerprint(self) -> bytes:
        return self._root.fingerprint()

    def xpub(self) -> str:
        return self._root.to_string(network(self.network).bip32)  # xpub on mainnet, tpub elsewhere

    def descriptor(self, chain: int = RECEIVE) -> str:
        return with_checksum(f"tr({self.xpub()}/{chain}/*)")

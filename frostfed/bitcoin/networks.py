"""The Bitcoin networks a federation can run on, under every name an operator meets.

Bitcoin Core's `getblockchaininfo` says `main`, `test`, `testnet4`, `signet`, `regtest`; Core Lightning
says `bitcoin`, `testnet`, `testnet4`, `signet`, `regtest`. Both sets of names are accepted wherever a
network is named, and each maps to one `Network` that fixes the address prefixes and the extended key
version: a federation's keys, addresses and descriptors follow the one network it was configured for, and
a chain source on another network is refused at start (`check_chain`).
"""

from __future__ import annotations

from dataclasses import dataclass


class NetworkError(ValueError):
    """An unknown network name, or a chain source on another network than the one configured."""


@dataclass(frozen=True)
class Network:
    name: str
    """Bitcoin Core's `-chain` / `getblockchaininfo.chain` name: the canonical one."""
    lightningd: str
    """Core Lightning's `--network` / `getinfo.network` name."""
    hrp: str
    """Human-readable part of segwit addresses (BIP 173)."""
    p2pkh: int
    p2sh: int
    bip32: str
    """Extended key version: "main" (xpub) or "test" (tpub)."""

    @property
    def xpub_prefix(self) -> str:
        return "xpub" if self.bip32 == "main" else "tpub"


MAIN = Network("main", "bitcoin", "bc", 0x00, 0x05, "main")
TESTNET = Network("test", "testnet", "tb", 0x6F, 0xC4, "test")
TESTNET4 = Network("testnet4", "testnet4", "tb", 0x6F, 0xC4, "test")
SIGNET = Network("signet", "signet", "tb", 0x6F, 0xC4, "test")
REGTEST = Network("regtest", "regtest", "bcrt", 0x6F, 0xC4, "test")

NETWORKS: tuple[Network, ...] = (MAIN, TESTNET, TESTNET4, SIGNET, REGTEST)

_BY_NAME: dict[str, Network] = {
    **{n.name: n for n in NETWORKS},
    **{n.lightningd: n for n in NETWORKS},
    "mainnet": MAIN,
    "testnet3": TESTNET,
}

NAMES: tuple[str, ...] = tuple(sorted(_BY_NAME))
"""Every accepted spelling (for error messages and option help)."""


def network(name: str | Network) -> Network:
    """The network called `name` by Bitcoin Core or Core Lightning (case-insensitive)."""
    if isinstance(name, Network):
        return name
    if not isinstance(name, str):
        raise NetworkError(f"a network is named by a string, got {name!r}")
    found = _BY_NAME.get(name.strip().lower())
    if found is None:
        raise NetworkError(f"unknown network {name!r} (known: {', '.join(NAMES)})")
    return found


def canonical(name: str | Network) -> str:
    """Bitcoin Core's name of the network called `name` (what the rest of the code passes around)."""
    return network(name).name


def check_chain(configured: str | Network, reported: str, source: str) -> Network:
    """Refuse a chain source whose network is not the configured one: coins, addresses and keys of one
    network mean nothing on another, and a mainnet key handed out as a test key loses real money."""
    want = network(configured)
    try:
        got = network(reported)
    except NetworkError:
        raise NetworkError(f"{source} is on an unknown network {reported!r}; this member is configured for "
                           f"{want.name}") from None
    if got != want:
        raise NetworkError(
            f"network mismatch: this member is configured for {want.name} ({want.lightningd}) but {source} "
            f"is on {got.name} ({got.lightningd}); refusing to start"
        )
    return want

"""One network setting: addresses, descriptors and every address argument follow it, and a chain source
on another network is refused at start.

The slow tests run a real bitcoind on mainnet, signet and testnet4 with no peers (`-connect=0`): the
chain name `getblockchaininfo` reports and the addresses and descriptors that node accepts are what is
checked; the federation's own addresses must be ones that node calls valid, and ones of another
network must be refused by both."""

from __future__ import annotations

import pytest
from chain_bitcoind import ChainBitcoind
from coincurve import PrivateKey

from frostfed.bitcoin.networks import NETWORKS, NetworkError, canonical, check_chain, network
from frostfed.bitcoin.taproot import AddressError, address_from_script, p2tr_address, script_from_address
from frostfed.federation.epoch_keys import EpochKeys
from frostfed.plugin.cln_member import plugin_network
from frostfed.plugin.daemon import check_network

KEY = PrivateKey(bytes(31) + b"\x07").public_key.format()
CHAIN_CODE = bytes(range(32))


def keys(net: str) -> EpochKeys:
    return EpochKeys(0, [KEY], 1, KEY, CHAIN_CODE, [KEY], net)


@pytest.mark.parametrize(
    ("name", "core", "hrp", "xpub"),
    [
        ("bitcoin", "main", "bc", "xpub"),
        ("main", "main", "bc", "xpub"),
        ("mainnet", "main", "bc", "xpub"),
        ("testnet", "test", "tb", "tpub"),
        ("test", "test", "tb", "tpub"),
        ("testnet4", "testnet4", "tb", "tpub"),
        ("signet", "signet", "tb", "tpub"),
        ("regtest", "regtest", "bcrt", "tpub"),
        ("Signet", "signet", "tb", "tpub"),
    ],
)
def test_bitcoin_core_and_core_lightning_names_mean_one_network(name: str, core: str, hrp: str, xpub: str) -> None:
    assert canonical(name) == core
    addr = p2tr_address(keys(name).output_key((0, 0)), name)
    assert addr.startswith(hrp + "1p")
    assert keys(name).xpub().startswith(xpub)
    assert keys(name).descriptor().startswith(f"tr({xpub}")
    assert script_from_address(addr, core) == keys(name).script((0, 0))
    assert address_from_script(keys(name).script((0, 0)), name) == addr


@pytest.mark.parametrize("name", ["", "liquid", "testnet5", "bcrt", 3, None])
def test_unknown_networks_are_refused_by_name(name: object) -> None:
    with pytest.raises(NetworkError):
        network(name)  # type: ignore[arg-type]
    with pytest.raises(AddressError):
        p2tr_address(bytes(32), name)  # type: ignore[arg-type]


def test_an_address_of_another_network_is_refused() -> None:
    script = keys("main").script((0, 0))
    for net in NETWORKS:
        addr = address_from_script(script, net)
        assert addr is not None
        for other in NETWORKS:
            if other.hrp != net.hrp:
                with pytest.raises(AddressError, match="expected"):
                    script_from_address(addr, other)
    p2pkh_main = address_from_script(b"\x76\xa9\x14" + bytes(20) + b"\x88\xac", "bitcoin")
    assert p2pkh_main is not None and p2pkh_main.startswith("1")
    with pytest.raises(AddressError, match="not a signet address"):
        script_from_address(p2pkh_main, "signet")


def test_a_mismatch_is_one_clear_line() -> None:
    assert check_chain("bitcoin", "main", "bitcoind").name == "main"
    assert check_chain("testnet", "test", "bitcoind").name == "test"
    with pytest.raises(NetworkError) as e:
        check_chain("bitcoin", "signet", "bitcoind at 127.0.0.1:38332")
    msg = str(e.value)
    assert "\n" not in msg and "main" in msg and "signet" in msg and "refusing to start" in msg
    with pytest.raises(NetworkError, match="unknown network"):
        check_chain("regtest", "liquidv1", "bitcoind")


def test_the_plugin_follows_lightningd_and_refuses_another_frost_network() -> None:
    assert plugin_network("", "bitcoin") == "main"
    assert plugin_network(None, "testnet4") == "testnet4"
    assert plugin_network("main", "bitcoin") == "main"
    with pytest.raises(NetworkError, match="network mismatch"):
        plugin_network("signet", "regtest")
    with pytest.raises(NetworkError, match="unknown network"):
        plugin_network("mainnet2", "bitcoin")


# --- real bitcoind on other networks -------------------------------------------------------------------

HRP_OF = {"main": "bc", "signet": "tb", "testnet4": "tb"}


@pytest.fixture(scope="module", params=["main", "signet", "testnet4"])
def other_chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    node = ChainBitcoind(tmp_path_factory.mktemp(f"btc-{request.param}"), request.param)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.slow
def test_a_real_node_agrees_on_the_network_and_its_addresses(other_chain: ChainBitcoind) -> None:
    net = other_chain.chain
    assert other_chain.rpc.call("getblockchaininfo")["chain"] == net
    assert check_network(other_chain.rpc, net) is None
    for wrong in ("regtest", "bitcoin" if net != "main" else "signet"):
        with pytest.raises(NetworkError, match="network mismatch"):
            check_network(other_chain.rpc, wrong)
    k = keys(net)
    ours = p2tr_address(k.output_key((0, 3)), net)
    assert ours.startswith(HRP_OF[net] + "1p")
    assert other_chain.rpc.call("validateaddress", ours)["isvalid"] is True
    for wrong in ("regtest", "main" if net != "main" else "signet"):
        assert other_chain.rpc.call("validateaddress", p2tr_address(k.output_key((0, 3)), wrong))["isvalid"] is False
    # the descriptor a watch-only wallet imports derives exactly the federation's addresses on that node
    derived = other_chain.rpc.call("deriveaddresses", k.descriptor(0), [0, 3])
    assert derived == [p2tr_address(k.output_key((0, i)), net) for i in range(4)]
    # the node's own script for the address is the federation's
    assert bytes.fromhex(other_chain.rpc.call("validateaddress", ours)["scriptPubKey"]) == k.script((0, 3))
    assert script_from_address(ours, net) == k.script((0, 3))


def test_check_network_reports_an_unreachable_bitcoind_without_refusing() -> None:
    from frostfed.bitcoin.chain import BitcoindRpc
    from frostfed.bitcoin.regtest import free_port

    rpc = BitcoindRpc("127.0.0.1", free_port(), user="u", password="p", timeout=5)
    why = check_network(rpc, "signet")
    assert why is not None and why


# --- the daemon on signet and testnet4 ---------------------------------------------------------------


def _on_network(members: list, name: str) -> None:
    for m in members:
        m.config.write_text(m.config.read_text().replace("[federation]\n", f'[federation]\nnetwork = "{name}"\n', 1))


@pytest.fixture(scope="module", params=["signet"])  # testnet4's addresses and keys are checked above
def test_chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    node = ChainBitcoind(tmp_path_factory.mktemp(f"btc-{request.param}-fed"), request.param)
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.slow
def test_daemons_on_a_test_network_hand_out_its_keys_and_refuse_other_networks(test_chain: ChainBitcoind, tmp_path):
    import subprocess
    import sys

    from frostfed.plugin.localcluster import wait_for_epoch, write_cluster
    from frostfed.plugin.rpcclient import RpcCallError

    net = test_chain.chain
    other_chain = test_chain
    members = write_cluster(tmp_path / "fed", 2, 2, other_chain.rpc_port, other_chain.cookie)
    _on_network(members, net)
    try:
        for m in members:
            m.start()
        for m in members:
            m.wait_ready()
        wait_for_epoch(members)
        addr = members[0].call("frost-newaddr")["address"]
        assert addr.startswith("tb1p")
        assert other_chain.rpc.call("validateaddress", addr)["isvalid"] is True
        desc = members[1].call("frost-descriptor")
        receive = next(v for v in desc.values() if isinstance(v, str) and "/0/*" in v)
        assert receive.startswith("tr(tpub")
        assert other_chain.rpc.call("deriveaddresses", receive, [0, 0]) == [addr]
        credited = members[0].call("frost-ledger-credit", [addr, 1000, "k1"])
        assert credited["credited"] is True
        with pytest.raises(RpcCallError, match="another network"):
            members[0].call("frost-ledger-credit", ["bcrt1p" + addr[4:], 1000, "k2"])
        with pytest.raises(RpcCallError, match="another network"):
            members[0].call("frost-payout", [[{"address": "bc1q" + "q" * 38, "sats": 1000}]])
    finally:
        for m in members:
            m.stop()
    # the same data directory and bitcoind with a member configured for mainnet: refused at once
    cfg = members[0].config
    cfg.write_text(cfg.read_text().replace(f'network = "{net}"', 'network = "bitcoin"'))
    r = subprocess.run([sys.executable, "-m", "frostfed", "run", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    said = [line for line in r.stderr.splitlines() if "network mismatch" in line]
    assert len(said) == 1 and net in said[0] and "main" in said[0], r.stderr
    assert "Traceback" not in r.stderr


class _LateBitcoind:
    """A chain source that cannot be reached for its first answers, then says which chain it is on."""

    host, port = "127.0.0.1", 1

    def __init__(self, chain: str, failures: int) -> None:
        self.chain, self.failures, self.calls = chain, failures, 0

    def call(self, method: str, *params: object) -> dict[str, str]:
        from frostfed.bitcoin.chain import ChainUnavailable

        assert method == "getblockchaininfo"
        self.calls += 1
        if self.calls <= self.failures:
            raise ChainUnavailable("connection refused")
        return {"chain": self.chain}


async def test_a_bitcoind_unreachable_at_the_start_is_checked_once_it_answers() -> None:
    import asyncio

    from frostfed.plugin.daemon import watch_network

    wrong = _LateBitcoind("signet", failures=2)
    stop, failed = asyncio.Event(), []
    await asyncio.wait_for(watch_network(wrong, "main", stop, failed, retry=0.01), 5)  # type: ignore[arg-type]
    assert stop.is_set() and wrong.calls == 3
    assert len(failed) == 1 and "network mismatch" in str(failed[0])

    right = _LateBitcoind("main", failures=1)
    stop, failed = asyncio.Event(), []
    await asyncio.wait_for(watch_network(right, "bitcoin", stop, failed, retry=0.01), 5)  # type: ignore[arg-type]
    assert not stop.is_set() and failed == [] and right.calls == 2

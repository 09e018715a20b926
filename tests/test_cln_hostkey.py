"""The ChillDKG host key comes from the node (makesecret): stable per node, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from clnsim import SimNetwork

from frostfed.lightning_rpc import LightningRpc, LightningRpcError
from frostfed.plugin.cln import PluginContext
from frostfed.plugin.hostkey import HOSTSEED_LABEL, derive_host_seed

CAP = Path(__file__).parent / "plugins" / "cap_plugin.py"
PLUGIN = Path(__file__).resolve().parent.parent / "frostfed-plugin.py"


@pytest.fixture
async def nodes():
    net = SimNetwork(seed=21)
    a = await net.add_node(CAP)
    b = await net.add_node(CAP)
    yield net, a, b
    await net.close()


async def test_host_seed_is_stable_per_node_and_differs_between_nodes(nodes):
    _, a, b = nodes
    ra, rb = LightningRpc(a.rpc_path), LightningRpc(b.rpc_path)
    s1, s2, s3 = await derive_host_seed(ra), await derive_host_seed(ra), await derive_host_seed(rb)
    assert len(s1) == 32 and s1 == s2 and s1 != s3
    assert s1 == a.makesecret(HOSTSEED_LABEL.encode())


async def test_unreachable_node_is_a_clear_error(tmp_path):
    with pytest.raises(LightningRpcError, match="unavailable"):
        await derive_host_seed(LightningRpc(tmp_path / "no-such-socket", timeout=2))


async def test_the_seed_never_shows_in_logs_or_reprs():
    net = SimNetwork(seed=22)
    try:
        node = await net.add_node(PLUGIN)
        seed = (await LightningRpc(node.rpc_path).call("makesecret", {"string": HOSTSEED_LABEL}))["secret"]
        await node.stop()
        text = "\n".join(m for _, m in node.logs) + node.stderr_path.read_text()
        assert seed not in text
    finally:
        await net.close()
    fields = PluginContext.__dataclass_fields__
    assert fields["host_seed"].repr is False

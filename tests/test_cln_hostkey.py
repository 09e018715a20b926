"""The ChillDKG host key comes from the node (makesecret) and is bound to its id (signmessage)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clnsim import SimNetwork
from coincurve import PrivateKey

from frostfed.lightning_rpc import LightningRpc, LightningRpcError
from frostfed.plugin.cln import PluginContext
from frostfed.plugin.hostkey import (
    HOSTSEED_LABEL,
    binding_statement,
    check_binding,
    derive_host_seed,
    sign_binding,
)

CAP = Path(__file__).parent / "plugins" / "cap_plugin.py"
PLUGIN = Path(__file__).resolve().parent.parent / "frostfed-plugin.py"


@pytest.fixture
async def nodes():
    net = SimNetwork(seed=21)
    a = await net.add_node(CAP)
    b = await net.add_node(CAP)
    yield net, a, b
    await net.close()


def host_pub(seed: bytes) -> bytes:
    return PrivateKey(seed).public_key.format()


async def test_host_seed_is_stable_per_node_and_differs_between_nodes(nodes):
    _, a, b = nodes
    ra, rb = LightningRpc(a.rpc_path), LightningRpc(b.rpc_path)
    s1, s2, s3 = await derive_host_seed(ra), await derive_host_seed(ra), await derive_host_seed(rb)
    assert len(s1) == 32 and s1 == s2 and s1 != s3
    assert s1 == a.makesecret(HOSTSEED_LABEL.encode())


async def test_binding_verifies_only_for_the_signing_node_and_its_host_key(nodes):
    _, a, b = nodes
    ra, rb = LightningRpc(a.rpc_path), LightningRpc(b.rpc_path)
    a_id, b_id = bytes.fromhex(a.node_id), bytes.fromhex(b.node_id)
    pub = host_pub(await derive_host_seed(ra))
    zbase = await sign_binding(ra, a_id, pub)
    assert await check_binding(rb, a_id, pub, zbase) is True
    other = host_pub(await derive_host_seed(rb))
    assert await check_binding(rb, a_id, other, zbase) is False  # another host key
    assert await check_binding(rb, b_id, pub, zbase) is False  # claimed by another node
    assert await check_binding(rb, a_id, pub, "null") is False  # not a signature
    assert await check_binding(rb, a_id, pub, "") is False
    assert await check_binding(rb, a_id, pub, zbase, role="member") is False  # same key, other role


def test_statement_names_both_keys_and_refuses_bad_lengths():
    a, h = b"\x02" + b"\x11" * 32, b"\x03" + b"\x22" * 32
    text = binding_statement(a, h)
    assert a.hex() in text and h.hex() in text
    with pytest.raises(ValueError):
        binding_statement(a[:32], h)


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

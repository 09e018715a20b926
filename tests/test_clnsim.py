"""The lightningd stand-in says and answers what the recorded Core Lightning v26.06 does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from clnsim import CliError, Faults, ManifestError, PluginDied, SimNetwork, SimNode
from vectorfiles import load_text

PLUGINS = Path(__file__).parent / "plugins"
CAP = PLUGINS / "cap_plugin.py"
RAW = PLUGINS / "raw_manifest_plugin.py"
OURS = "8001cafe"


def recording() -> list[dict[str, Any]]:
    text = load_text("../cln-protocol/lightningd-v26.06.6.jsonl")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def recorded(kind: str, method: str, session: str = "a") -> list[dict[str, Any]]:
    out = []
    for r in recording():
        if r["kind"] != kind or r["session"] != session:
            continue
        msg = r["msg"] if kind == "from_lightningd" else r["msg"]["request"]
        if msg.get("method") == method:
            out.append(r["msg"])
    return out


def shape(obj: Any) -> Any:
    """Keys and value types, recursively: what must match between recording and stand-in."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return type(obj).__name__


async def rpc(node: SimNode, method: str, params: Any = None) -> dict[str, Any]:
    """A call the plugin makes on the node's RPC socket (through the test plugin's `cap-rpc`)."""
    return await node.cli("cap-rpc", method=method, params=params if params is not None else {}, timeout=20)


async def settle(pred, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)


@pytest.fixture
async def net():
    network = SimNetwork(seed=7)
    yield network
    await network.close()


@pytest.fixture
async def pair(net):
    a = await net.add_node(CAP, {"cap-example": "hello", "cap-flag": True})
    b = await net.add_node(CAP)
    return a, b


async def test_getmanifest_and_init_as_recorded(pair):
    a, b = pair
    rec_manifest = recorded("from_lightningd", "getmanifest")[0]
    rec_init = {r["params"]["options"].get("cap-example"): r for r in recorded("from_lightningd", "init")}
    sent = [m for m in a.sent if m.get("method") == "getmanifest"]
    assert sent[0]["params"] == rec_manifest["params"] == {"allow-deprecated-apis": True}
    assert re.fullmatch(r"cln:getmanifest#\d+", sent[0]["id"])
    for node, key in ((a, "hello"), (b, "default-value")):
        init = next(m for m in node.sent if m.get("method") == "init")
        want = rec_init[key]["params"]
        assert init["params"]["options"] == want["options"]  # flag only when set, as true
        assert shape(init["params"]) == shape(want)
        assert init["params"]["configuration"]["feature_set"] == want["configuration"]["feature_set"]
        assert init["params"]["configuration"]["lightning-dir"].endswith("/regtest")
        assert init["params"]["configuration"]["rpc-file"] == "lightning-rpc"
    assert a.fatal == [] and b.fatal == []


async def test_cli_positional_and_keyword_calls(pair):
    a, _ = pair
    assert await a.cli("cap-echo", "hi", 3, True) == {"echo": ["hi"] * 3, "flag": True}
    assert await a.cli("cap-echo", text="kw", count=2) == {"echo": ["kw", "kw"], "flag": False}
    calls = [m for m in a.sent if m.get("method") == "cap-echo"]
    assert calls[0]["params"] == ["hi", 3, True] and calls[1]["params"] == {"text": "kw", "count": 2}
    for m in calls:
        assert re.fullmatch(r"cli:cap-echo#\d+/cln:cap-echo#\d+", m["id"])
    with pytest.raises(CliError) as e:
        await a.cli("cap-fail")
    assert (e.value.code, e.value.message) == (1234, "cap-fail always fails")
    with pytest.raises(CliError) as e:
        await a.cli("cap-echo")  # missing argument: pyln refuses, plugin stays up
    assert e.value.code == -32600
    assert await a.cli("cap-echo", "again") == {"echo": ["again"], "flag": False}


async def test_custom_messages_connect_and_peer_rules(pair):
    a, b = pair
    got = await rpc(a, "connect", {"id": b.node_id, "host": "127.0.0.1", "port": b.port})
    rec = recorded("rpc", "connect")[0]["response"]["result"]
    assert shape(got["result"]) == shape(rec)
    assert got["result"]["direction"] == "out" and got["result"]["id"] == b.node_id
    await settle(lambda: len(a.hook_calls) == 1 and len(b.hook_calls) == 1)
    # lightningd's own 0x0007 message reaches the hook on every connect, from the other side
    assert a.hook_calls[0]["payload"].startswith("00070039") and a.hook_calls[0]["peer_id"] == b.node_id
    assert b.hook_calls[0]["payload"].startswith("00070039") and b.hook_calls[0]["peer_id"] == a.node_id
    notes = [m for m in a.notifications_sent if m["method"] == "connect"]
    rec_note = next(r for r in recorded("from_lightningd", "connect") if r["params"]["connect"]["direction"] == "out")
    assert shape(notes[0]) == shape(rec_note)

    ok = await rpc(a, "sendcustommsg", {"node_id": b.node_id, "msg": OURS})
    assert ok == {"result": {"status": "Message sent to connectd for delivery"}}
    await settle(lambda: len(b.hook_calls) == 2)
    assert b.hook_calls[1] == {"payload": OURS, "peer_id": a.node_id}
    rec_hook = recorded("from_lightningd", "custommsg")[-1]
    sent_hook = [m for m in b.sent if m.get("method") == "custommsg"][-1]
    assert shape(sent_hook) == shape(rec_hook) and re.fullmatch(r"cln:custommsg#\d+", sent_hook["id"])

    peers = await rpc(a, "listpeers")
    assert shape(peers["result"]) == shape(recorded("rpc", "listpeers", "b")[0]["response"]["result"])

    # an even type is accepted, and the receiving peer hangs up
    assert (await rpc(a, "sendcustommsg", {"node_id": b.node_id, "msg": "8000cafe"}))["result"]["status"]
    assert (await rpc(a, "listpeers")) == {"result": {"peers": []}}
    assert [m["params"] for m in b.notifications_sent if m["method"] == "disconnect"] == [
        {"disconnect": {"id": a.node_id}}
    ]
    assert len(b.hook_calls) == 2

    refused = await rpc(a, "sendcustommsg", {"node_id": b.node_id, "msg": "0101cafe"})
    assert refused["error"] == recorded("rpc", "sendcustommsg", "b")[-1]["response"]["error"]
    nobody = "030000000000000000000000000000000000000000000000000000000000000001"
    unknown = await rpc(a, "sendcustommsg", {"node_id": nobody, "msg": OURS})
    assert unknown["error"] == recorded("rpc", "sendcustommsg")[-1]["response"]["error"]
    assert a.fatal == [] and b.fatal == []


async def test_secrets_and_signatures(pair):
    a, b = pair
    s1 = (await rpc(a, "makesecret", {"string": "frostfed/hostkey"}))["result"]
    s2 = (await rpc(a, "makesecret", {"string": "frostfed/hostkey"}))["result"]
    s3 = (await rpc(b, "makesecret", {"string": "frostfed/hostkey"}))["result"]
    rec = recorded("rpc", "makesecret")[0]["response"]["result"]
    assert shape(s1) == shape(rec) and len(bytes.fromhex(s1["secret"])) == 32
    assert s1 == s2 and s1 != s3
    assert (await rpc(a, "makesecret", {}))["error"]["code"] == -32602

    signed = (await rpc(a, "signmessage", {"message": "frostfed host key 02ab"}))["result"]
    assert shape(signed) == shape(recorded("rpc", "signmessage")[0]["response"]["result"])
    msg = {"message": "frostfed host key 02ab", "zbase": signed["zbase"]}
    good = await rpc(b, "checkmessage", {**msg, "pubkey": a.node_id})
    assert good["result"] == {"pubkey": a.node_id, "verified": True}
    bad = await rpc(b, "checkmessage", {**msg, "message": "tampered", "pubkey": a.node_id})
    assert bad["result"]["verified"] is False and bad["result"]["pubkey"] != a.node_id
    nokey = await rpc(b, "checkmessage", msg)
    assert nokey["error"] == {
        "code": 1301,
        "message": "pubkey not found in the graph",
        "data": {"claimed_key": a.node_id},
    }
    junk = await rpc(b, "checkmessage", {"message": "x", "zbase": "null", "pubkey": a.node_id})
    assert junk["error"] == recorded("rpc", "checkmessage")[0]["response"]["error"]


async def test_recorded_signature_verifies_in_the_stand_in(pair):
    """A signature made by real lightningd checks out here, and the tampered case fails as recorded."""
    _, b = pair
    for r in recorded("rpc", "checkmessage", "b"):
        params, response = r["request"]["params"], r["response"]
        got = await rpc(b, "checkmessage", params)
        if "result" in response:
            assert got["result"] == response["result"]
        else:
            assert got["error"] == response["error"]


async def test_unknown_method_configs_and_getinfo(pair):
    a, _ = pair
    unknown = await rpc(a, "nosuchmethod")
    assert unknown["error"] == recorded("rpc", "nosuchmethod")[0]["response"]["error"]
    net = await rpc(a, "listconfigs", {"config": "network"})
    assert net["result"] == recorded("rpc", "listconfigs")[0]["response"]["result"]
    info = (await rpc(a, "getinfo"))["result"]
    assert set(info) == set(recorded("rpc", "getinfo")[0]["response"]["result"])
    assert info["id"] == a.node_id
    configs = (await a.cli("listconfigs"))["configs"]
    assert configs["cap-example"] == {"value_str": "hello", "source": "cmdline", "plugin": str(CAP)}
    assert configs["cap-flag"]["set"] is True
    assert configs["cap-int"]["value_int"] == 7 and configs["cap-int"]["dynamic"] is True


async def test_setconfig_reaches_the_plugin_as_text(pair):
    a, _ = pair
    out = await a.cli("setconfig", "cap-int", 9)
    assert out["config"]["value_int"] == 9
    sent = next(m for m in a.sent if m.get("method") == "setconfig")
    assert sent["params"] == recorded("from_lightningd", "setconfig")[0]["params"]
    with pytest.raises(CliError):
        await a.cli("setconfig", "cap-example", "x")  # not dynamic


@pytest.mark.parametrize(
    "manifest, reason",
    [
        ([], "Invalid/missing result"),
        ({"options": [{"name": "x", "type": "weird", "description": ""}]}, "Unknown option type"),
        (
            {"options": [{"name": "x", "type": "int", "default": "seven", "description": ""}]},
            "not a valid int",
        ),
        ({"rpcmethods": [{"name": "m", "description": "no usage"}]}, "usage"),
        ({"rpcmethods": [{"name": "getinfo", "usage": ""}]}, "already registered"),
        ({"hooks": [{"name": "no_such_hook"}]}, "Unknown hook"),
        ({"custommessages": [70000]}, "u16"),
        ({"dynamic": "yes"}, "dynamic"),
    ],
)
async def test_malformed_manifests_are_refused(net, monkeypatch, manifest, reason):
    monkeypatch.setenv("CLNSIM_MANIFEST", json.dumps(manifest))
    with pytest.raises(ManifestError, match=reason):
        await net.add_node(RAW)
    assert not net.nodes[-1].alive


async def test_bad_option_value_is_refused(net):
    with pytest.raises(ManifestError, match="not a number"):
        await net.add_node(CAP, {"cap-int": "seven"})
    with pytest.raises(ManifestError, match="unrecognized option"):
        await net.add_node(CAP, {"no-such-option": "1"})


async def test_fault_mode_drops_delays_and_disconnects():
    net = SimNetwork(seed=3, faults=Faults(drop=0.3, delay=0.3, max_delay=0.05, seed=11))
    try:
        a = await net.add_node(CAP)
        b = await net.add_node(CAP)
        await a.builtin("connect", {"id": f"{b.node_id}@127.0.0.1:{b.port}"})
        for i in range(60):
            await a.builtin("sendcustommsg", {"node_id": b.node_id, "msg": OURS + f"{i:04x}"})
        c = net.counts
        await settle(lambda: len(b.hook_calls) == 1 + c.sent - c.dropped, timeout=20)
        assert c.sent == 60 and 0 < c.dropped < 60 and 0 < c.delayed < 60
        got = [h["payload"] for h in b.hook_calls[1:]]
        assert len(set(got)) == len(got) == 60 - c.dropped
        assert got != sorted(got)  # late messages overtake others

        net.faults = Faults(disconnect=1.0)
        await a.builtin("sendcustommsg", {"node_id": b.node_id, "msg": OURS})
        assert net.counts.disconnects == 1 and a.peers == {}
        with pytest.raises(CliError, match="No such peer"):
            await a.builtin("sendcustommsg", {"node_id": b.node_id, "msg": OURS})
        assert a.fatal == [] and b.fatal == []
    finally:
        await net.close()


async def test_stopped_node_disconnects_its_peers(net):
    a = await net.add_node(CAP)
    b = await net.add_node(CAP)
    await a.builtin("connect", [b.node_id, "127.0.0.1", b.port])
    await b.stop()
    assert not b.alive and a.peers == {}
    assert [m["params"] for m in a.notifications_sent if m["method"] == "disconnect"] == [
        {"disconnect": {"id": b.node_id}}
    ]
    with pytest.raises(CliError) as e:
        await a.builtin("connect", [b.node_id, "127.0.0.1", b.port])
    assert e.value.code == 401
    assert os.path.exists(a.rpc_path) and not os.path.exists(b.rpc_path)


async def test_stdout_garbage_kills_the_plugin(net):
    node = await net.add_node(PLUGINS / "noisy_plugin.py")
    with contextlib.suppress(PluginDied):
        await node.cli("noisy", timeout=10)
    await settle(lambda: not node.alive)
    assert "non-JSON" in node.fatal[0]

"""ClnChannel's own rules: its one message type in, refusals out, connect on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from clnsim import SimNetwork
from waiting import wait_for_async

from frostfed.lightning_rpc import LightningRpc
from frostfed.net.channel import ChannelError
from frostfed.net.cln_channel import FROSTFED_MSGTYPE, ClnChannel, parse_member

CAP = Path(__file__).parent / "plugins" / "cap_plugin.py"
PEER = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"  # the generator: a valid compressed key


def test_message_type_is_odd_and_custom():
    assert FROSTFED_MSGTYPE % 2 == 1 and FROSTFED_MSGTYPE >= 32768


async def test_only_our_type_is_delivered_without_its_prefix():
    ch = ClnChannel(LightningRpc("/nonexistent", timeout=1), bytes.fromhex("03" + "22" * 32))
    await ch.start()
    got: list[tuple[bytes, bytes]] = []
    ch.on_receive(lambda p, d: got.append((p, d)))
    t = FROSTFED_MSGTYPE.to_bytes(2, "big").hex()
    for peer, payload in [
        (PEER, "00070039" + "ab" * 57),  # lightningd's own message on connect
        (PEER, "8001cafe"),  # someone else's custom type
        (PEER, t[:2]),  # truncated
        (PEER, "zz"),  # not hex
        ("nothex", t + "00"),
        (None, None),
        (PEER, t + "cafe"),
        (PEER, t),  # an empty message is still a message
    ]:
        await asyncio.to_thread(ch.handle_custommsg, peer, payload)  # as the hook thread does
    await wait_for_async(lambda: len(got) >= 2, 5, "the last message")  # handled in order: all are, then
    assert got == [(bytes.fromhex(PEER), b"\xca\xfe"), (bytes.fromhex(PEER), b"")]
    assert ch.connected(bytes.fromhex(PEER))
    await ch.close()


async def test_send_refusals_become_channel_errors():
    net = SimNetwork(seed=31)
    try:
        a = await net.add_node(CAP)
        b = await net.add_node(CAP)
        ch = ClnChannel(LightningRpc(a.rpc_path), bytes.fromhex(a.node_id), reconnect_interval=60)
        await ch.start()
        with pytest.raises(ChannelError, match="No such peer"):
            await ch.send(bytes.fromhex(b.node_id), b"x")
        with pytest.raises(ChannelError, match="exceeds"):
            await ch.send(bytes.fromhex(b.node_id), b"x" * (ch.max_payload + 1))
        await ch.close()
        # with b as a member the channel connects by itself, then sends
        ch = ClnChannel(
            LightningRpc(a.rpc_path),
            bytes.fromhex(a.node_id),
            {bytes.fromhex(b.node_id): f"127.0.0.1:{b.port}"},
        )
        await ch.start()
        async with asyncio.timeout(10):
            while not ch.connected(bytes.fromhex(b.node_id)):
                await asyncio.sleep(0.02)
        await ch.send(bytes.fromhex(b.node_id), b"\x01" * ch.max_payload)
        async with asyncio.timeout(10):
            while not any(h["payload"].startswith(f"{FROSTFED_MSGTYPE:04x}") for h in b.hook_calls):
                await asyncio.sleep(0.02)
        last = b.hook_calls[-1]["payload"]
        assert len(bytes.fromhex(last)) == 65535
        await ch.close()
    finally:
        await net.close()


@pytest.mark.parametrize("text", ["02ab@127.0.0.1:1", "zz", PEER + "@nohostport", PEER + "@h:99999", "04" + "11" * 32])
def test_bad_member_entries_are_refused(text):
    with pytest.raises(ValueError):
        parse_member(text)


def test_member_entries_parse():
    assert parse_member(PEER) == (bytes.fromhex(PEER), None)
    assert parse_member(f" {PEER}@127.0.0.1:9735 ") == (bytes.fromhex(PEER), "127.0.0.1:9735")

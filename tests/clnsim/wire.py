"""Peer message types lightningd manages itself: `sendcustommsg` refuses to send them."""

from __future__ import annotations

INTERNAL_TYPES: dict[int, str] = {
    1: "WIRE_WARNING", 2: "WIRE_STFU", 7: "WIRE_PEER_STORAGE", 9: "WIRE_PEER_STORAGE_RETRIEVAL",
    16: "WIRE_INIT", 17: "WIRE_ERROR", 18: "WIRE_PING", 19: "WIRE_PONG",
    32: "WIRE_OPEN_CHANNEL", 33: "WIRE_ACCEPT_CHANNEL", 34: "WIRE_FUNDING_CREATED",
    35: "WIRE_FUNDING_SIGNED", 36: "WIRE_CHANNEL_READY", 38: "WIRE_SHUTDOWN", 39: "WIRE_CLOSING_SIGNED",
    40: "WIRE_CLOSING_COMPLETE", 41: "WIRE_CLOSING_SIG",
    64: "WIRE_OPEN_CHANNEL2", 65: "WIRE_ACCEPT_CHANNEL2", 66: "WIRE_TX_ADD_INPUT",
    67: "WIRE_TX_ADD_OUTPUT", 68: "WIRE_TX_REMOVE_INPUT", 69: "WIRE_TX_REMOVE_OUTPUT",
    70: "WIRE_TX_COMPLETE", 71: "WIRE_TX_SIGNATURES", 72: "WIRE_TX_INIT_RBF", 73: "WIRE_TX_ACK_RBF",
    74: "WIRE_TX_ABORT", 77: "WIRE_SPLICE", 78: "WIRE_SPLICE_ACK", 79: "WIRE_SPLICE_LOCKED",
    128: "WIRE_UPDATE_ADD_HTLC", 130: "WIRE_UPDATE_FULFILL_HTLC", 131: "WIRE_UPDATE_FAIL_HTLC",
    132: "WIRE_COMMITMENT_SIGNED", 133: "WIRE_REVOKE_AND_ACK", 134: "WIRE_UPDATE_FEE",
    135: "WIRE_UPDATE_FAIL_MALFORMED_HTLC", 136: "WIRE_CHANNEL_REESTABLISH",
    256: "WIRE_CHANNEL_ANNOUNCEMENT", 257: "WIRE_NODE_ANNOUNCEMENT", 258: "WIRE_CHANNEL_UPDATE",
    259: "WIRE_ANNOUNCEMENT_SIGNATURES", 261: "WIRE_QUERY_SHORT_CHANNEL_IDS",
    262: "WIRE_REPLY_SHORT_CHANNEL_IDS_END", 263: "WIRE_QUERY_CHANNEL_RANGE",
    264: "WIRE_REPLY_CHANNEL_RANGE", 265: "WIRE_GOSSIP_TIMESTAMP_FILTER", 513: "WIRE_ONION_MESSAGE",
}  # fmt: skip

PEER_STORAGE_ON_CONNECT = 0x0007
"""The foreign message lightningd hands to every `custommsg` hook when a peer connects."""


def refusal(msgtype: int) -> str:
    return (
        f"Cannot send messages of type {msgtype} ({INTERNAL_TYPES[msgtype]}). It is not possible to send "
        "messages that have a type managed internally since that might cause issues with the internal "
        "state tracking."
    )

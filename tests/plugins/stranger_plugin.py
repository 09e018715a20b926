#!/usr/bin/env python3
"""A node that is no member: it keeps every custom message it receives (`stranger-inbox`), so a test sees
whether a member answered it at all."""

import threading

from pyln.client import Plugin

plugin = Plugin()
inbox: list[dict] = []
lock = threading.Lock()


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    if not payload.startswith("0007"):  # lightningd's own type on every connect
        with lock:
            inbox.append({"peer_id": peer_id, "payload": payload})
    return {"result": "continue"}


@plugin.method("stranger-inbox")
def stranger_inbox(**kwargs):
    """The custom messages received so far."""
    with lock:
        return {"messages": list(inbox)}


plugin.run()

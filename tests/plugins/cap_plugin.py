#!/usr/bin/env python3
"""The small pyln-client plugin the lightningd recording was made with (same options and methods)."""

from pyln.client import Plugin, RpcError, RpcException

plugin = Plugin()
plugin.add_option("cap-example", "default-value", "a string option")
plugin.add_flag_option("cap-flag", "a flag option")
plugin.add_option("cap-int", 7, "a dynamic int option", opt_type="int", dynamic=True)


@plugin.method("cap-echo")
def cap_echo(text, count=1, flag=False, **kwargs):
    """Echo text count times."""
    return {"echo": [text] * int(count), "flag": flag}


@plugin.method("cap-fail")
def cap_fail(**kwargs):
    """Always fails."""
    raise RpcException("cap-fail always fails", code=1234)


@plugin.method("cap-rpc")
def cap_rpc(method, params=None, **kwargs):
    """Call lightningd's RPC and return its answer or error."""
    try:
        return {"result": plugin.rpc.call(method, params)}
    except RpcError as e:
        return {"error": e.error}


@plugin.method("cap-options")
def cap_options(**kwargs):
    """The option values the plugin got."""
    return {name: plugin.get_option(name) for name in ("cap-example", "cap-flag", "cap-int")}


@plugin.hook("custommsg")
def on_custommsg(peer_id, payload, plugin, **kwargs):
    return {"result": "continue"}


@plugin.subscribe("connect")
def on_connect(plugin, **kwargs):
    pass


@plugin.subscribe("disconnect")
def on_disconnect(plugin, **kwargs):
    pass


@plugin.subscribe("block_added")
def on_block(plugin, **kwargs):
    pass


plugin.run()

"""The Core Lightning plugin: the federation inside lightningd, over the node's own links.

`lightningd --plugin=frostfed-plugin.py` (or `lightning-cli plugin start ...`) runs it. Every command of
`frostfed.federation.commands` becomes a `lightning-cli frost-...` method that accepts positional and
`-k` keyword parameters alike; each runs on a background asyncio loop and answers when done, so the
plugin's single-threaded stdin loop (and with it lightningd's hooks) never waits on the federation.

The federation service is made by a factory given the `PluginContext` (channel, node id, host seed,
data directory, options, RPC); `cln_main` runs the plugin with `cln_member`'s factory. Until the service
exists every `frost-*` call fails with NOT_READY, after its arguments have been checked.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyln.client import Plugin
from pyln.client.plugin import RequestState

from frostfed.federation import commands
from frostfed.lightning_rpc import LightningRpc
from frostfed.net.channel import PeerId
from frostfed.net.cln_channel import ClnChannel, parse_member
from frostfed.plugin.background import BackgroundLoop
from frostfed.plugin.hostkey import derive_host_seed

log = logging.getLogger("frostfed.plugin")

OPTIONS: tuple[tuple[str, Any, str, str], ...] = (
    ("frost-config", "", "string", "TOML file with [policy] and [membership] tables (empty: defaults)."),
    ("frost-datadir", "", "string", "Data directory (empty: <lightning-dir>/<network>/frostfed)."),
    ("frost-members", "", "string", "Comma-separated fellow members, each <node id>@<host>:<port>."),
    ("frost-threshold", 0, "int", "Signing threshold t (0: floor(2n/3) + 1 of the n members)."),
    ("frost-reconnect-interval", 10, "int", "Seconds between attempts to reconnect to members."),
    ("frost-joining", False, "flag", "Wait to be admitted (frost-join at a member); frost-members = contacts."),
    ("frost-network", "", "string", "Network the federation is on (empty: lightningd's); must match lightningd's."),
)


@dataclass
class PluginContext:
    """What the federation service is built from inside lightningd."""

    channel: ClnChannel
    node_id: PeerId
    host_seed: bytes = field(repr=False)
    data_dir: Path
    options: dict[str, Any]
    members: dict[PeerId, str | None]
    rpc: LightningRpc
    lightning_dir: Path
    network: str
    loop: asyncio.AbstractEventLoop
    log: Callable[..., None]
    report: Callable[[str], None]
    """Say why the service is not ready yet (frost-* calls answer NOT_READY with this text)."""


LIGHTNINGD_LEVELS: tuple[tuple[int, str], ...] = (
    (logging.ERROR, "broken"),
    (logging.WARNING, "unusual"),
    (logging.INFO, "info"),
    (logging.NOTSET, "debug"),
)
"""Python logging levels as lightningd's log levels (lightningd knows io, debug, info, unusual, broken)."""

PYTHON_LEVELS = {"io": logging.DEBUG, "trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
                 "unusual": logging.WARNING, "broken": logging.ERROR}


def lightningd_level(levelno: int) -> str:
    return next(name for floor, name in LIGHTNINGD_LEVELS if levelno >= floor)


def python_level(log_levels: Any, plugin_name: str) -> int:
    """The Python level matching the node's `log-level` setting(s): `level` or `level:filter` entries; an
    entry counts when it has no filter or its filter names this plugin."""
    entries = log_levels if isinstance(log_levels, list) else [log_levels]
    found = []
    for entry in entries:
        if not isinstance(entry, str):
            continue
        level, _, flt = entry.partition(":")
        if level in PYTHON_LEVELS and (not flt or flt in plugin_name):
            found.append(PYTHON_LEVELS[level])
    return min(found, default=logging.INFO)


class LightningdLogHandler(logging.Handler):
    """Forwards the project's log records to lightningd's log at the matching level (pyln's own handler
    maps warnings to info and leaves the root logger at WARNING, so info lines never arrived)."""

    def __init__(self, plugin: Plugin) -> None:
        super().__init__()
        self.plugin = plugin
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.plugin.log(self.format(record), level=lightningd_level(record.levelno))
        except Exception:
            self.handleError(record)


def answer_error(plugin: Plugin, request: Any, error: commands.RpcError) -> None:
    """Answer `request` with `{code, message, data}` exactly: pyln's `set_exception` would drop `data` and
    add the plugin's stack trace, which is no business of a lightning-cli user."""
    if request.state != RequestState.PENDING:
        return
    request.state = RequestState.FAILED
    plugin._write_locked({"jsonrpc": "2.0", "id": request.id, "error": error.to_json()})


ServiceFactory = Callable[[PluginContext], Any]
"""`factory(ctx) -> service` (or an awaitable of it); the service implements commands.Service."""


def _signature(command: commands.Command) -> inspect.Signature:
    """`(request, p1=None, ..., *extra, **unknown)`: pyln binds anything; Command.bind then judges it."""
    P = inspect.Parameter
    params = [P("request", P.POSITIONAL_OR_KEYWORD)]
    params += [P(p.name, P.POSITIONAL_OR_KEYWORD, default=None) for p in command.params]
    params += [P("extra", P.VAR_POSITIONAL), P("unknown", P.VAR_KEYWORD)]
    return inspect.Signature(params)


def _raw_params(request: Any) -> list[Any] | dict[str, Any]:
    params = request.params
    if isinstance(params, dict):  # pyln adds the request (and drops "plugin") in place
        return {k: v for k, v in params.items() if k not in ("request", "plugin")}
    return list(params)


class FrostfedPlugin:
    def __init__(self, service_factory: ServiceFactory | None = None, **plugin_kwargs: Any) -> None:
        self.factory = service_factory
        self.plugin = Plugin(**plugin_kwargs)
        root = logging.getLogger()
        for handler in list(root.handlers):  # pyln's handler: wrong levels, and it misses info records
            if type(handler).__name__ == "PluginLogHandler":
                root.removeHandler(handler)
        self.log_handler = LightningdLogHandler(self.plugin)
        project_log = logging.getLogger("frostfed")
        project_log.addHandler(self.log_handler)
        project_log.setLevel(logging.INFO)
        project_log.propagate = False
        self.loop: BackgroundLoop | None = None
        self.service: Any = None
        self.context: PluginContext | None = None
        self.not_ready = "starting"
        self._lock = threading.Lock()
        for name, default, otype, desc in OPTIONS:
            self.plugin.add_option(name, default, desc, opt_type=otype)
        for command in commands.COMMANDS.values():
            self._add_command(command)
        self.plugin.add_hook("custommsg", self._on_custommsg)
        self.plugin.add_subscription("connect", self._on_connect)
        self.plugin.add_subscription("disconnect", self._on_disconnect)
        self.plugin.add_subscription("shutdown", self._on_shutdown)
        self.plugin.child_init = self._init

    # ---- commands ----------------------------------------------------------------------------

    def _add_command(self, command: commands.Command) -> None:
        def method(*args: Any, **kwargs: Any) -> None:
            request = args[0] if args else kwargs["request"]
            self._start_command(command, request)

        method.__dict__["__signature__"] = _signature(command)  # what inspect.signature (pyln) reads
        method.__doc__ = command.help_text
        method.__name__ = command.name.replace("-", "_")
        self.plugin.add_method(command.name, method, background=True, description=command.summary)
        # lightningd (since 24.08) shows only the manifest's usage in `help`: it carries the description
        # and the parameters, as pyln's own "usage \n doc" convention does.
        usage = f"{command.usage}  \n " + command.help_text.replace("\n", "\n ")
        self.plugin.methods[command.name].get_usage = lambda: usage

    def _start_command(self, command: commands.Command, request: Any) -> None:
        params = _raw_params(request)
        if self.loop is None:
            answer_error(
                self.plugin, request, commands.RpcError(commands.NOT_READY, f"frostfed is not ready: {self.not_ready}")
            )
            return
        self.loop.submit(self._run_command(command, params, request))

    async def _run_command(self, command: commands.Command, params: Any, request: Any) -> None:
        try:
            command.bind(params)  # bad arguments are reported even before the service exists
            if self.service is None:
                raise commands.RpcError(commands.NOT_READY, f"frostfed is not ready: {self.not_ready}")
            result = await commands.dispatch(self.service, command.name, params)
        except commands.RpcError as e:
            self._refused(command, e)
            answer_error(self.plugin, request, e)
        except Exception as e:  # the plugin answers and stays up
            err = commands.RpcError(commands.INTERNAL_ERROR, f"{command.name} failed: {type(e).__name__}: {e}")
            log.error("%s", err.message)
            answer_error(self.plugin, request, err)
        else:
            try:
                request.set_result(result)
            except (TypeError, ValueError) as e:  # not JSON: answer anyway, never leave the caller waiting
                err = commands.RpcError(commands.INTERNAL_ERROR, f"{command.name} gave a result that is not JSON: {e}")
                request.state = RequestState.PENDING
                answer_error(self.plugin, request, err)

    @staticmethod
    def _refused(command: commands.Command, e: commands.RpcError) -> None:
        """A refusal leaves a trace in the node's log (bad arguments are the caller's business only)."""
        if e.code in (commands.POLICY_REJECTED, commands.SIGNING_FAILED, commands.MEMBERSHIP_REFUSED):
            reasons = (e.data or {}).get("rejections") if isinstance(e.data, dict) else None
            why = f"; reasons {reasons}" if reasons else ""
            log.warning("%s refused (%d): %s%s", command.name, e.code, e.message, why)

    # ---- start-up ----------------------------------------------------------------------------

    def _init(self, options: dict[str, Any], configuration: dict[str, Any], plugin: Plugin, **kwargs: Any) -> None:
        opts = {name: plugin.get_option(name) for name, *_ in OPTIONS}
        try:  # the node's log-level decides what is worth sending (lightningd filters again anyway)
            levels = plugin.rpc.listconfigs("log-level")["configs"]["log-level"]
            value = levels.get("values_str") or levels.get("value_str")
            name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "frostfed"
            logging.getLogger("frostfed").setLevel(python_level(value, f"plugin-{name}"))
        except Exception as e:
            log.warning("could not read the node's log-level (%s); logging at info", e)
        lightning_dir = Path(configuration["lightning-dir"])
        members: dict[PeerId, str | None] = {}
        for item in str(opts["frost-members"] or "").split(","):
            if item.strip():
                peer, addr = parse_member(item)  # a bad member list is refused at start
                members[peer] = addr
        data_dir = Path(opts["frost-datadir"]) if opts["frost-datadir"] else lightning_dir / "frostfed"
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        rpc = LightningRpc(lightning_dir / configuration["rpc-file"], caller="frostfed")
        self.loop = BackgroundLoop()
        self.loop.submit(
            self._start(rpc, opts, members, data_dir, lightning_dir, str(configuration.get("network", "")))
        )

    async def _start(
        self,
        rpc: LightningRpc,
        opts: dict[str, Any],
        members: dict[PeerId, str | None],
        data_dir: Path,
        lightning_dir: Path,
        network: str,
    ) -> None:
        try:
            info = await rpc.call("getinfo")
            node_id = bytes.fromhex(info["id"])
            seed = await derive_host_seed(rpc)
            interval = max(1, int(opts["frost-reconnect-interval"]))
            channel = ClnChannel(rpc, node_id, members, reconnect_interval=interval)
            await channel.start()
            self.context = PluginContext(
                channel=channel,
                node_id=node_id,
                host_seed=seed,
                data_dir=data_dir,
                options=opts,
                members=members,
                rpc=rpc,
                lightning_dir=lightning_dir,
                network=network,
                loop=asyncio.get_running_loop(),
                log=self.plugin.log,
                report=self._report,
            )
            if self.factory is None:
                self.not_ready = "no federation service is attached to this plugin"
                return
            service = self.factory(self.context)
            if inspect.isawaitable(service):
                service = await service
            if service is None:  # the factory reported why
                return
            self.service = service
            self.plugin.log(f"frostfed ready as member {node_id.hex()}")
        except Exception as e:
            self.not_ready = f"start-up failed: {type(e).__name__}: {e}"
            self.plugin.log(self.not_ready, level="broken")

    def _report(self, reason: str) -> None:
        self.not_ready = reason

    # ---- lightningd events (stdin thread) ------------------------------------------------------

    def _on_custommsg(self, peer_id: Any = None, payload: Any = None, plugin: Any = None, **kwargs: Any) -> Any:
        try:
            if self.context is not None:
                self.context.channel.handle_custommsg(peer_id, payload)
        except Exception as e:  # a hook must always answer "continue", or lightningd dies
            self.plugin.log(f"custommsg: {type(e).__name__}: {e}", level="unusual")
        return {"result": "continue"}

    @staticmethod
    def _peer_of(event: Any, kwargs: dict[str, Any]) -> Any:
        data = event if isinstance(event, dict) else kwargs
        return data.get("id")

    def _on_connect(self, plugin: Any = None, connect: Any = None, **kwargs: Any) -> None:
        if self.context is not None:
            self.context.channel.handle_connect(self._peer_of(connect, kwargs))

    def _on_disconnect(self, plugin: Any = None, disconnect: Any = None, **kwargs: Any) -> None:
        if self.context is not None:
            self.context.channel.handle_disconnect(self._peer_of(disconnect, kwargs))

    def _on_shutdown(self, plugin: Any = None, **kwargs: Any) -> None:
        self.close()
        os._exit(0)  # lightningd waits for us to exit; pyln's stdin loop would not return by itself

    # ---- running -----------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            loop, self.loop = self.loop, None
        if loop is None:
            return

        async def shut() -> None:
            closer = getattr(self.service, "close", None)
            if closer is not None:
                res = closer()
                if inspect.isawaitable(res):
                    await res
            if self.context is not None:
                await self.context.channel.close()

        try:
            loop.submit(shut()).result(timeout)
        except Exception as e:
            self.plugin.log(f"shutdown: {type(e).__name__}: {e}", level="unusual")
        loop.stop()

    def run(self) -> None:
        try:
            self.plugin.run()
        finally:
            self.close()


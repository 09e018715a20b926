"""`frostfed`: run a member, talk to a running member, or run the demo.

frostfed run --config member.toml [--log-level debug]   start a member daemon
frostfed keygen identity.key          make a member identity (prints its id)
frostfed member-id identity.key       print the member id of an existing identity key file
frostfed -d DATADIR frost-status      any frost-* command, positional or key=value params
frostfed help [command]               the commands, or one command's parameters
frostfed -d DATADIR ledger-credit ADDRESS SATS   the pool's share accounting credits a miner
frostfed demo                         the whole life cycle on a local regtest

As lightning-cli: -k/-o force keyword/positional parameters (by default the first parameter decides:
key=value with a key the command knows), -H prints human-readable output, and the exit code is 1 for
an error the member returned, 2 when the member cannot be reached, 3 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any, NoReturn

from frostfed.federation import commands

RPC_ERROR = 1
CONNECTION_ERROR = 2
USAGE_ERROR = 3

LOCAL_COMMANDS = {
    "run": "--config FILE [--log-level LEVEL]: start a member daemon",
    "keygen": "PATH [--passphrase-file FILE]: make a member identity key file; prints the member id",
    "member-id": "PATH [--passphrase-file FILE]: the member id of an existing identity key file",
    "ledger-credit": "ADDRESS SATS: credit a miner in the ledger of the data directory (no daemon needed)",
    "demo": "[--dir DIR]: the whole life cycle on a local regtest",
    "help": "[COMMAND]: the commands, or one command's usage and parameters",
}
_KEY = re.compile(r"[a-z_][a-z0-9_]*\Z")
MAX_SATS = 21_000_000 * 100_000_000


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; lightning-cli (and so this CLI) exits 3."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} ({self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def _value(text: str) -> Any:
    """A JSON list, object, "quoted string", true, false or null as itself, anything else as the string
    it is. Numbers stay strings: every numeric parameter of the table takes its digits, and a request
    id or key made only of digits (or like `12e45`) must not turn into a number on the way."""
    if text in ("true", "false", "null") or text[:1] in ("[", "{", '"'):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    return text


def parse_params(method: str, raw: list[str], mode: str = "auto") -> list[Any] | dict[str, Any]:
    """The params of one call: `keywords` (each `key=value`), `ordered` (each a value), or `auto`:
    keywords when the first argument is `key=value` with a key the command takes, so a base64 PSBT
    ending in `=` stays a value."""
    if mode == "auto":
        mode = "ordered"
        if raw and "=" in raw[0]:
            key = raw[0].split("=", 1)[0]
            command = commands.COMMANDS.get(method)
            names = {p.name for p in command.params} if command is not None else None
            if (names is not None and key in names) or (names is None and _KEY.match(key)):
                mode = "keywords"
    if mode == "ordered":
        return [_value(r) for r in raw]
    params: dict[str, Any] = {}
    for r in raw:
        key, eq, value = r.partition("=")
        if not eq or not key:
            raise UsageError(f"Expected key=value in '{r}'")
        if key in params:
            raise UsageError(f"parameter '{key}' given twice")
        params[key] = _value(value)
    return params


def human(value: Any, out: list[str], term: str = "\n") -> None:
    """lightning-cli's -H: strings bare, one list item per line, objects as key=value lines, an object
    with a single field shown as its value."""
    if isinstance(value, list):
        for v in value:
            human(v, out)
    elif isinstance(value, dict):
        if len(value) == 1:
            human(next(iter(value.values())), out)
            return
        for k, v in value.items():
            out.append(f"{k}=")
            human(v, out)
    else:
        text = value if isinstance(value, str) else json.dumps(value)
        out.append(f"{text}{term}")


def render(value: Any, human_readable: bool) -> str:
    if not human_readable:
        return json.dumps(value, indent=2) + "\n"
    out: list[str] = []
    human(value, out)
    return "".join(out)


def help_text(name: str | None) -> str:
    """`frostfed help` and `frostfed help <command>`, from the command table."""
    if name is None:
        lines = ["Commands of a running member (frostfed -d DATADIR <command> [params]):", ""]
        for c in commands.COMMANDS.values():
            lines += [f"{c.name} {c.usage}".rstrip(), f"    {c.summary}", ""]
        lines += ["Commands run by frostfed itself:", ""]
        lines += [f"{k} {v}" for k, v in LOCAL_COMMANDS.items()]
        lines += ["", "frostfed help <command> shows a command's parameters."]
        return "\n".join(lines) + "\n"
    command = commands.COMMANDS.get(name)
    if command is not None:
        return f"usage: frostfed {command.name} {command.usage}".rstrip() + "\n\n" + command.help_text + "\n"
    if name in LOCAL_COMMANDS:
        return f"usage: frostfed {name} {LOCAL_COMMANDS[name]}\n"
    raise UsageError(f"unknown command '{name}' (frostfed help lists them)")


def _call(data_dir: Path, method: str, raw: list[str], mode: str, human_readable: bool) -> int:
    from frostfed.plugin import rpcclient
    from frostfed.plugin.daemon import SOCKET_NAME

    try:
        params = parse_params(method, raw, mode)
    except UsageError as e:
        print(f"frostfed: {e}", file=sys.stderr)
        return USAGE_ERROR
    if not data_dir.is_dir():
        print(f"frostfed: no data directory {data_dir} (give the member's with -d)", file=sys.stderr)
        return CONNECTION_ERROR
    socket = data_dir / SOCKET_NAME
    try:
        result = rpcclient.call(socket, method, params)
    except rpcclient.RpcCallError as e:
        out = {"code": e.code, "message": e.message}
        if e.data is not None:
            out["data"] = e.data
        sys.stderr.write(render(out, human_readable))
        return RPC_ERROR
    except TimeoutError:
        print(f"frostfed: the member at {socket} did not answer in time", file=sys.stderr)
        return CONNECTION_ERROR
    except OSError as e:
        print(f"frostfed: cannot reach the member at {socket}: {e.strerror or e}", file=sys.stderr)
        return CONNECTION_ERROR
    sys.stdout.write(render(result, human_readable))
    return 0


def _ledger_credit(data_dir: Path, address: str, sats: str, network: str | None) -> int:
    from frostfed.bitcoin.ledger import Ledger, LedgerError
    from frostfed.bitcoin.taproot import AddressError, script_from_address
    from frostfed.federation.member_config import offline_network

    if not (sats.isascii() and sats.isdigit() and len(sats) <= 20 and 0 < int(sats) <= MAX_SATS):
        print(f"frostfed: cannot credit: SATS must be a whole number in 1..{MAX_SATS}, not {sats!r}", file=sys.stderr)
        return USAGE_ERROR
    if not data_dir.is_dir():
        print(f"frostfed: cannot credit: no data directory {data_dir}", file=sys.stderr)
        return RPC_ERROR
    try:
        script = script_from_address(address, offline_network(data_dir, network))
        ledger = Ledger(data_dir / "ledger.sqlite")
        try:
            ledger.credit(script, int(sats))
        finally:
            ledger.close()
    except (AddressError, LedgerError, ValueError) as e:
        print(f"frostfed: cannot credit: {e}", file=sys.stderr)
        return RPC_ERROR
    except (sqlite3.Error, OSError) as e:
        print(f"frostfed: cannot credit: the ledger in {data_dir} cannot be written: {e}", file=sys.stderr)
        return RPC_ERROR
    print(json.dumps({"address": address, "credited": int(sats)}))
    return 0


def _passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes().strip()
    except OSError as e:
        print(f"frostfed: cannot read {path}: {e.strerror}", file=sys.stderr)
        sys.exit(2)


def _keygen(args: list[str]) -> None:
    from frostfed.federation.identity import create_identity_file

    sub = _Parser(prog="frostfed keygen")
    sub.add_argument("path", type=Path)
    sub.add_argument("--passphrase-file", type=Path, help="seal the key under this file's passphrase")
    opts = sub.parse_args(args)
    passphrase = _passphrase(opts.passphrase_file)
    try:
        ident = create_identity_file(opts.path, passphrase)
    except FileExistsError:
        if not os.path.lexists(opts.path):  # a file where a directory of the path should be
            print(f"frostfed: cannot write an identity key file at {opts.path}: not a directory", file=sys.stderr)
        else:
            print(f"frostfed: {opts.path} exists; not overwriting an identity", file=sys.stderr)
        sys.exit(2)
    except ValueError as e:
        print(f"frostfed: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"frostfed: cannot write an identity key file at {opts.path}: {e.strerror or e}", file=sys.stderr)
        sys.exit(2)
    print(ident.id.hex())


def _member_id(args: list[str]) -> None:
    from frostfed.federation.identity import IdentityError, load_identity_file

    sub = _Parser(prog="frostfed member-id")
    sub.add_argument("path", type=Path)
    sub.add_argument("--passphrase-file", type=Path, help="the passphrase the key file is sealed under")
    opts = sub.parse_args(args)
    try:
        ident = load_identity_file(opts.path, _passphrase(opts.passphrase_file))
    except (IdentityError, ValueError) as e:  # ValueError: a path with a NUL byte
        print(f"frostfed: {e}", file=sys.stderr)
        sys.exit(2)
    print(ident.id.hex())


def _run(args: list[str]) -> None:
    sub = _Parser(prog="frostfed run")
    sub.add_argument("--config", required=True)
    sub.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default: info"
    )
    opts = sub.parse_args(args)
    from frostfed.federation.config import ConfigError
    from frostfed.federation.identity import IdentityError
    from frostfed.federation.sealing import SealError
    from frostfed.federation.store_db import StoreError
    from frostfed.plugin.daemon import main_run
    from frostfed.plugin.rpcserver import SocketInUse

    try:
        main_run(opts.config, opts.log_level)
    except (ConfigError, IdentityError, StoreError, SocketInUse, SealError, ValueError) as e:
        print(f"frostfed: {e}", file=sys.stderr)
        sys.exit(2)
    except sqlite3.Error as e:
        print(f"frostfed: the data directory's database cannot be used: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # e.g. the listen port is taken
        print(f"frostfed: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}", file=sys.stderr)
        sys.exit(2)
    except Exception:  # a failure of the daemon itself: its traceback belongs in its log
        logging.getLogger("frostfed").exception("the daemon stopped on an error")
        sys.exit(1)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("frostfed")
    except PackageNotFoundError:
        from frostfed import __version__

        return __version__


def main(argv: list[str] | None = None) -> None:
    try:
        _main(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # whatever the input, one line and a non-zero exit, never a traceback
        print(f"frostfed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


def _main(argv: list[str]) -> None:
    parser = _Parser(prog="frostfed", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-d", "--data-dir", type=Path, default=Path("."), help="the member's data directory")
    parser.add_argument("--network", default=None, help="for ledger-credit: default the data directory's network")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("-k", "--keywords", action="store_const", dest="mode", const="keywords", default="auto",
                      help="parameters are key=value")
    form.add_argument("-o", "--order", action="store_const", dest="mode", const="ordered",
                      help="parameters are values, in the command's order")
    parser.add_argument("-H", "--human-readable", action="store_true", help="human-readable output")
    parser.add_argument("-V", "--version", action="version", version=f"frostfed {_version()}")
    parser.add_argument("command", help="run | keygen | member-id | demo | ledger-credit | help | frost-*")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    if ns.command == "run":
        _run(ns.args)
    elif ns.command == "keygen":
        _keygen(ns.args)
    elif ns.command == "member-id":
        _member_id(ns.args)
    elif ns.command == "demo":
        from frostfed.plugin.demo import main as demo_main

        sys.exit(demo_main(ns.args))
    elif ns.command == "help":
        if len(ns.args) > 1:
            parser.error("help takes at most one command")
        try:
            sys.stdout.write(help_text(ns.args[0] if ns.args else None))
        except UsageError as e:
            print(f"frostfed: {e}", file=sys.stderr)
            sys.exit(USAGE_ERROR)
    elif ns.command == "ledger-credit":
        if len(ns.args) != 2:
            parser.error("ledger-credit takes ADDRESS SATS")
        sys.exit(_ledger_credit(ns.data_dir, ns.args[0], ns.args[1], ns.network))
    elif ns.command in commands.COMMANDS or ns.command.startswith("frost-"):
        sys.exit(_call(ns.data_dir, ns.command, ns.args, ns.mode, ns.human_readable))
    else:
        parser.error(f"unknown command {ns.command!r} (frostfed help lists them)")

"""`frostfed`: run a member, talk to a running member, or run the demo.

frostfed run --config member.toml          start a member daemon
frostfed keygen identity.key               make a member identity (prints its id)
frostfed -d DATADIR frost-status           any frost-* command, positional or key=value params
frostfed -d DATADIR ledger-credit ADDRESS SATS   the pool's share accounting credits a miner
frostfed demo                              the whole life cycle on a local regtest
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from frostfed.federation import commands


def _param(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _call(data_dir: Path, method: str, raw: list[str]) -> int:
    from frostfed.plugin import rpcclient
    from frostfed.plugin.daemon import SOCKET_NAME

    params: list[Any] | dict[str, Any]
    if raw and all("=" in r and not r.startswith(("[", "{")) for r in raw):
        params = {k: _param(v) for k, v in (r.split("=", 1) for r in raw)}
    else:
        params = [_param(r) for r in raw]
    try:
        result = rpcclient.call(data_dir / SOCKET_NAME, method, params)
    except rpcclient.RpcCallError as e:
        out = {"code": e.code, "message": e.message}
        if e.data is not None:
            out["data"] = e.data
        print(json.dumps(out, indent=2), file=sys.stderr)
        return 1
    except OSError as e:
        print(f"cannot reach the member at {data_dir / SOCKET_NAME}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def _ledger_credit(data_dir: Path, address: str, sats: str, network: str | None) -> int:
    from frostfed.bitcoin.ledger import Ledger, LedgerError
    from frostfed.bitcoin.taproot import AddressError, script_from_address
    from frostfed.federation.member_config import offline_network

    try:
        script = script_from_address(address, offline_network(data_dir, network))
        amount = int(sats)
        ledger = Ledger(data_dir / "ledger.sqlite")
        ledger.credit(script, amount)
        ledger.close()
    except (AddressError, LedgerError, ValueError) as e:
        print(f"cannot credit: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"address": address, "credited": amount}))
    return 0


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="frostfed", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-d", "--data-dir", type=Path, default=Path("."), help="the member's data directory")
    parser.add_argument("--network", default=None, help="for ledger-credit: default the data directory's network")
    parser.add_argument("command", help="run | keygen | demo | ledger-credit | frost-*")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    if ns.command == "run":
        sub = argparse.ArgumentParser(prog="frostfed run")
        sub.add_argument("--config", required=True)
        opts = sub.parse_args(ns.args)
        from frostfed.federation.config import ConfigError
        from frostfed.federation.identity import IdentityError
        from frostfed.federation.sealing import SealError
        from frostfed.federation.store import StoreError
        from frostfed.plugin.daemon import main_run
        from frostfed.plugin.rpcserver import SocketInUse

        try:
            main_run(opts.config)
        except (ConfigError, IdentityError, StoreError, SocketInUse, SealError, ValueError) as e:
            print(f"frostfed: {e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:  # e.g. the listen port is taken
            print(f"frostfed: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}", file=sys.stderr)
            sys.exit(2)
        return
    if ns.command == "keygen":
        from frostfed.federation.identity import create_identity_file

        sub = argparse.ArgumentParser(prog="frostfed keygen")
        sub.add_argument("path")
        sub.add_argument("--passphrase-file", type=Path, help="seal the key under this file's passphrase")
        kopts = sub.parse_args(ns.args)
        passphrase = None
        if kopts.passphrase_file is not None:
            try:
                passphrase = kopts.passphrase_file.read_bytes().strip()
            except OSError as e:
                print(f"frostfed: cannot read {kopts.passphrase_file}: {e.strerror}", file=sys.stderr)
                sys.exit(2)
        try:
            ident = create_identity_file(Path(kopts.path), passphrase)
        except ValueError as e:
            print(f"frostfed: {e}", file=sys.stderr)
            sys.exit(2)
        except FileExistsError:
            print(f"frostfed: {kopts.path} exists; not overwriting an identity", file=sys.stderr)
            sys.exit(2)
        print(ident.id.hex())
        return
    if ns.command == "demo":
        from frostfed.plugin.demo import main as demo_main

        sys.exit(demo_main(ns.args))
    if ns.command == "ledger-credit":
        if len(ns.args) != 2:
            parser.error("ledger-credit takes ADDRESS SATS")
        sys.exit(_ledger_credit(ns.data_dir, ns.args[0], ns.args[1], ns.network))
    if ns.command in commands.COMMANDS or ns.command.startswith("frost-"):
        sys.exit(_call(ns.data_dir, ns.command, ns.args))
    parser.error(f"unknown command {ns.command!r}")

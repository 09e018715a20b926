"""The standalone member daemon: a configuration file in, a running member out.

Assembles the layers (Noise over TCP, SQLite, bitcoind, the policy) around `Member`, serves the
control socket, and stops cleanly on SIGTERM or SIGINT. A member killed with SIGKILL restarts from
its store: the epoch and share come back, unused nonces are discarded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from urllib.parse import urlparse

from frostfed.bitcoin.chain import BitcoindChainSource, BitcoindRpc
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.ledger import Ledger
from frostfed.federation.bond_wallet import BitcoindBondWallet
from frostfed.federation.config import Config, load_config
from frostfed.federation.identity import load_identity_file
from frostfed.federation.node import Member
from frostfed.federation.sealing import Sealer
from frostfed.federation.service import FederationService
from frostfed.federation.store import Store
from frostfed.net.tcp import NoiseChannel
from frostfed.plugin.rpcserver import RpcServer

log = logging.getLogger("frostfed")

SOCKET_NAME = "frostfed-rpc"


def bitcoind_rpc(config: Config) -> BitcoindRpc | None:
    b = config.bitcoind
    if b is None:
        return None
    url = urlparse(b.rpc_url)
    return BitcoindRpc(
        url.hostname or "127.0.0.1",
        url.port or 8332,
        cookie_file=b.cookie_file,
        user=b.user,
        password=b.password,
        timeout=60,
    )


def _hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def sealer_for(config: Config, seal_seed: bytes) -> Sealer:
    if config.passphrase_file is None:
        return Sealer.from_seed(seal_seed)
    salt_file = config.data_dir / "seal.salt"
    if not salt_file.exists():
        config.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = salt_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(16))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, salt_file)
    passphrase = read_passphrase(config)
    assert passphrase is not None
    return Sealer.from_passphrase(passphrase, salt_file.read_bytes())


def read_passphrase(config: Config) -> bytes | None:
    if config.passphrase_file is None:
        return None
    try:
        return config.passphrase_file.read_bytes().strip()
    except OSError as e:
        raise ValueError(f"cannot read passphrase file {config.passphrase_file}: {e.strerror}") from None


def setup_logging(data_dir: Path, level: int = logging.INFO) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.FileHandler(data_dir / "frostfed.log")
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(handler)


async def run(config: Config) -> None:
    identity = load_identity_file(config.identity_key_file, read_passphrase(config))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.data_dir / "frostfed.sqlite")
    ledger = Ledger(config.data_dir / "ledger.sqlite")
    rpc = bitcoind_rpc(config)
    chain = BitcoindChainSource(rpc) if rpc is not None else None
    members = [] if config.joining else [m.id for m in config.members]
    directory = {m.id: f"{m.host}:{m.port}" for m in config.members}
    wallet_rpc = rpc.for_wallet(config.bitcoind.wallet) if rpc is not None and config.bitcoind else None
    channel = NoiseChannel(
        identity.private_key.secret,
        {m.id: (m.host, m.port) for m in config.members},
        listen=(config.listen_host, config.listen_port),
        reconnect_max=2.0,  # a member coming up late is reached within 2 s
    )
    member = Member(
        me=identity.id,
        echo_secret=identity.private_key.secret,
        host_seckey=identity.host_seed(),
        sealer=sealer_for(config, identity.seal_seed()),
        store=store,
        channel=channel,
        members=members,
        threshold=config.threshold,
        chain=chain,
        ledger=ledger,
        policy=config.policy,
        heartbeat_seconds=config.heartbeat_seconds,
        offline_after_seconds=config.offline_after_seconds,
        membership=config.membership,
        joining=config.joining,
        directory=directory,
        rpc=wallet_rpc,
        bond_key=identity.bond_secret(),
        bond_wallet=BitcoindBondWallet(wallet_rpc) if wallet_rpc is not None else None,
        add_peer=lambda peer, address: channel.add_member(peer, _hostport(address)),
        chain_index=ChainIndex(config.data_dir / "chain.sqlite"),
    )
    service = FederationService(member, wallet_rpc)
    server = RpcServer(service, config.data_dir / SOCKET_NAME)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await channel.start()
    await member.start()
    await server.start()
    log.info("member %s listening on %s:%d", identity.id.hex(), config.listen_host, config.listen_port)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await server.close()
        await member.stop()
        with contextlib.suppress(Exception):
            ledger.close()
        store.close()


def main_run(config_path: str) -> None:
    config = load_config(config_path)
    setup_logging(config.data_dir)
    asyncio.run(run(config))

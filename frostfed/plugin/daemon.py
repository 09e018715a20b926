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

from frostfed.bitcoin.chain import BitcoindChainSource, BitcoindRpc, ChainError
from frostfed.bitcoin.chain_index import ChainIndex
from frostfed.bitcoin.ledger import Ledger
from frostfed.bitcoin.networks import NetworkError, check_chain
from frostfed.federation import health
from frostfed.federation.bond_wallet import BitcoindBondWallet
from frostfed.federation.config import Config, load_config
from frostfed.federation.identity import load_identity_file
from frostfed.federation.member_config import MemberConfig, MemberParts, build_member, check_store_network
from frostfed.federation.sealing import Sealer
from frostfed.federation.service import FederationService
from frostfed.federation.store import Store
from frostfed.net.addresses import PeerAddress, peer_address
from frostfed.net.channel import PeerId
from frostfed.net.tcp import NoiseChannel
from frostfed.plugin import logfiles
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


NETWORK_RETRY_SECONDS = 5.0


def member_config(config: Config, me: PeerId) -> MemberConfig:
    """The daemon's file as the settings every front end shares (checked alike)."""
    return MemberConfig.create(
        me=me,
        network=config.network,
        members=[m.id for m in config.members],
        threshold=config.threshold,
        where_threshold="federation.threshold",
        policy=config.policy,
        membership=config.membership,
        joining=config.joining,
        heartbeat_seconds=config.heartbeat_seconds,
        offline_after_seconds=config.offline_after_seconds,
        roast_grace_seconds=config.roast_grace_seconds,
        directory={m.id: str(PeerAddress(m.id, m.host, m.port)) for m in config.members},
    )


def peer_host_port(peer: PeerId, address: str) -> tuple[str, int]:
    """Where to dial `peer` from its directory entry; an entry naming another key is refused (the Noise
    handshake would fail against it anyway)."""
    addr = peer_address(address, "member address")
    if addr.peer is not None and addr.peer != peer:
        raise ValueError(f"address {address} names another member than {peer.hex()[:16]}")
    return addr.host_port


def check_network(rpc: BitcoindRpc, network: str) -> str | None:
    """None once bitcoind confirmed it is on `network`; the reason it could not tell otherwise. A mismatch
    raises NetworkError: such a member must not start."""
    try:
        info = rpc.call("getblockchaininfo")
    except ChainError as e:
        return str(e)
    check_chain(network, str(info.get("chain", "")), f"bitcoind at {rpc.host}:{rpc.port}")
    return None


async def watch_network(
    rpc: BitcoindRpc, network: str, stop: asyncio.Event, failed: list[Exception], retry: float = NETWORK_RETRY_SECONDS
) -> None:
    """A bitcoind that was unreachable at the start is asked again every `retry` seconds; one that answers
    from another network stops the daemon within `retry` seconds of its first answer."""
    while not stop.is_set():
        try:
            why = await asyncio.to_thread(check_network, rpc, network)
        except NetworkError as e:
            log.error("%s", e)
            failed.append(e)
            stop.set()
            return
        if why is None:
            log.info("bitcoind is on %s", network)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), retry)


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


def setup_logging(data_dir: Path, level: int | str = logging.INFO) -> None:
    """To the data directory's log file and stderr; files created owner-only; SIGHUP reopens the log."""
    logfiles.setup(data_dir, level)


async def run(config: Config) -> None:
    identity = load_identity_file(config.identity_key_file, read_passphrase(config))
    settings = member_config(config, identity.id)
    rpc = bitcoind_rpc(config)
    unchecked = None
    if rpc is not None:  # a bitcoind on another network: one clear line, nothing started
        unchecked = await asyncio.to_thread(check_network, rpc, settings.network)
        if unchecked is not None:
            log.warning("cannot check bitcoind's network yet (%s); checking again until it answers", unchecked)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.data_dir / "frostfed.sqlite")
    try:
        check_store_network(store, settings.network, str(config.data_dir))
    except Exception:
        store.close()
        raise
    ledger = Ledger(config.data_dir / "ledger.sqlite")
    chain = BitcoindChainSource(rpc) if rpc is not None else None
    wallet_rpc = rpc.for_wallet(config.bitcoind.wallet) if rpc is not None and config.bitcoind else None
    channel = NoiseChannel(
        identity.private_key.secret,
        {m.id: (m.host, m.port) for m in config.members},
        listen=(config.listen_host, config.listen_port),
        reconnect_max=2.0,  # a member coming up late is reached within 2 s
    )
    parts = MemberParts(
        me=identity.id,
        echo_secret=identity.private_key.secret,
        host_seckey=identity.host_seed(),
        sealer=sealer_for(config, identity.seal_seed()),
        store=store,
        channel=channel,
        chain=chain,
        ledger=ledger,
        chain_index=ChainIndex(config.data_dir / "chain.sqlite"),
        rpc=wallet_rpc,
        bond_key=identity.bond_secret(),
        bond_wallet=BitcoindBondWallet(wallet_rpc) if wallet_rpc is not None else None,
        add_peer=lambda peer, address: channel.add_member(peer, peer_host_port(peer, address)),
    )
    member = build_member(settings, parts)
    service = FederationService(member, wallet_rpc)
    server = RpcServer(service, config.data_dir / SOCKET_NAME)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, logfiles.reopen)
    health.check_chain_at_start(member)
    failed: list[Exception] = []
    watcher = None
    if rpc is not None and unchecked is not None:
        watcher = asyncio.create_task(watch_network(rpc, settings.network, stop, failed))
    await channel.start()
    await member.start()
    await server.start()
    log.info("member %s listening on %s:%d", identity.id.hex(), config.listen_host, config.listen_port)
    try:
        await stop.wait()
        if failed:
            raise failed[0]
    finally:
        if watcher is not None:
            watcher.cancel()
        log.info("stopping")
        await server.close()
        await member.stop()
        with contextlib.suppress(Exception):
            ledger.close()
        store.close()


def main_run(config_path: str, log_level: str = "info") -> None:
    config = load_config(config_path)
    setup_logging(config.data_dir, log_level)
    asyncio.run(run(config))

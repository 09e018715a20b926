"""Noise (BOLT 8) links over TCP between federation members, as a `Channel`.

Every member listens; for each pair, the member with the smaller id dials (so a pair holds one link)
and redials with backoff whenever the link drops. Both sides check the remote static key against the
member list: the initiator by dialing a known key (XK), the responder after act three. Anything else
(unknown key, a handshake that stalls, bytes that fail authentication) closes that one connection
with a logged reason; the listener and the other links carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from coincurve import PrivateKey, PublicKey

from .channel import Channel, ChannelError, PeerId
from .noise import (
    ACT_ONE_SIZE,
    ACT_THREE_SIZE,
    ACT_TWO_SIZE,
    MAX_MESSAGE,
    Handshake,
    HandshakeError,
    Transport,
    TransportError,
)

Address = tuple[str, int]

DEFAULT_PROLOGUE = b"frostfed noise v1"

log = logging.getLogger("frostfed.net.tcp")


def short(peer: bytes) -> str:
    return peer.hex()[:16]


def _check_member_id(peer: bytes) -> None:
    try:
        ok = len(peer) == 33 and PublicKey(peer).format() == peer
    except ValueError:
        ok = False
    if not ok:
        raise ChannelError(f"member id {peer.hex()} is not a compressed secp256k1 public key")


def _keepalive(writer: asyncio.StreamWriter) -> None:
    """Let the kernel notice a silently dead peer (about 30 s), so the link is redialed."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)


@dataclass(eq=False)
class _Link:
    peer: PeerId
    transport: Transport
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class NoiseChannel(Channel):
    """Authenticated, encrypted datagrams of up to 65535 bytes to the members in `members`."""

    max_payload = MAX_MESSAGE
    lossless_while_connected = True

    def __init__(
        self,
        private_key: bytes,
        members: Mapping[PeerId, Address | None],
        *,
        listen: Address | None = ("127.0.0.1", 0),
        prologue: bytes = DEFAULT_PROLOGUE,
        handshake_timeout: float = 10.0,
        reconnect_min: float = 0.05,
        reconnect_max: float = 5.0,
        max_pending_handshakes: int = 64,
    ) -> None:
        super().__init__()
        self._private = private_key
        self.node_id: PeerId = PrivateKey(private_key).public_key.format()
        for peer in members:
            _check_member_id(peer)
        self._addresses: dict[PeerId, Address | None] = {p: a for p, a in members.items() if p != self.node_id}
        self._listen_at = listen
        self._prologue = prologue
        self._handshake_timeout = handshake_timeout
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._links: dict[PeerId, _Link] = {}
        self._dialers: dict[PeerId, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closing = False
        self._pending_handshakes = 0
        self._max_pending_handshakes = max_pending_handshakes
        self.refusals: deque[str] = deque(maxlen=100)
        """The latest reasons for refused or closed connections, for status displays and tests."""

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (if configured) and dial every member whose address is known."""
        if self._listen_at is not None:
            self._server = await asyncio.start_server(self._accept, self._listen_at[0], self._listen_at[1])
        for peer in self._addresses:
            self._maybe_dial(peer)

    @property
    def listen_address(self) -> Address:
        if self._server is None:
            raise ChannelError("not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def members(self) -> list[PeerId]:
        return list(self._addresses)

    def add_member(self, peer: PeerId, address: Address | None) -> None:
        """Admit a new member (a joiner, once the federation has agreed to it) and dial it."""
        _check_member_id(peer)
        if peer == self.node_id:
            return
        self._addresses[peer] = address
        if address is not None:
            self._maybe_dial(peer)

    def remove_member(self, peer: PeerId) -> None:
        """Stop accepting and dialing `peer` (it left or was expelled) and close its link."""
        self._addresses.pop(peer, None)
        dialer = self._dialers.pop(peer, None)
        if dialer is not None:
            dialer.cancel()
        link = self._links.get(peer)
        if link is not None:
            self._close_link(link, f"{short(peer)} is no longer a member")

    def set_address(self, peer: PeerId, address: Address) -> None:
        """Learn or change where a member listens; starts dialing it if this side dials."""
        if peer == self.node_id:
            return
        if peer not in self._addresses:
            raise ChannelError(f"{short(peer)} is not a member")
        self._addresses[peer] = address
        self._maybe_dial(peer)

    def connected(self, peer: PeerId) -> bool:
        link = self._links.get(peer)
        return link is not None and not link.closed.is_set()

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links.values()):
            self._close_link(link, None)
        tasks = [*self._dialers.values(), *self._tasks]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            # Since Python 3.12.1 wait_closed also waits for every accepted connection's transport, and an
            # unauthenticated peer that keeps its socket open would hold the close up for ever.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, peer: PeerId, payload: bytes) -> None:
        if len(payload) > self.max_payload:
            raise ChannelError(f"payload of {len(payload)} bytes exceeds {self.max_payload}")
        if peer not in self._addresses:
            raise ChannelError(f"{short(peer)} is not a member")
        link = self._links.get(peer)
        if link is None or link.closed.is_set():
            raise ChannelError(f"no link to {short(peer)}")
        # Encrypt and write in one step: the cipher's nonce order is the stream order.
        link.writer.write(link.transport.encrypt_message(payload))
        try:
            await link.writer.drain()
        except (ConnectionError, OSError) as exc:
            self._close_link(link, f"write failed: {exc.__class__.__name__}")
            raise ChannelError(f"link to {short(peer)} failed") from exc

    def reject(self, peer: PeerId, reason: str) -> None:
        link = self._links.get(peer)
        if link is not None:
            self._close_link(link, f"rejected input from {short(peer)}: {reason}")

    async def drop(self, peer: PeerId) -> None:
        """Cut the link to `peer` (it is redialed as after any loss); for fault injection and tests."""
        link = self._links.get(peer)
        if link is not None:
            self._close_link(link, None)

    # -- links -----------------------------------------------------------------------------------

    def _refuse(self, reason: str) -> None:
        self.refusals.append(reason)
        log.warning("%s: %s", short(self.node_id), reason)

    def _close_link(self, link: _Link, reason: str | None) -> None:
        if link.closed.is_set():
            return
        link.closed.set()
        if reason is not None:
            self._refuse(reason)
        link.writer.close()
        if self._links.get(link.peer) is link:
            del self._links[link.peer]
            self.peer_disconnected(link.peer)

    def _install(self, link: _Link) -> None:
        _keepalive(link.writer)
        old = self._links.get(link.peer)
        if old is not None:
            # The newer link wins: the peer redialed, so the old one is stale.
            del self._links[link.peer]
            self._close_link(old, None)
        self._links[link.peer] = link
        link.task = self._spawn(self._read_loop(link))
        self.peer_connected(link.peer)

    def _spawn(self, coro) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read_loop(self, link: _Link) -> None:
        try:
            while not link.closed.is_set():
                data = await link.reader.read(65536)
                if not data:
                    break
                try:
                    messages = link.transport.feed(data)
                except TransportError as exc:
                    self._close_link(link, f"link from {short(link.peer)}: {exc}")
                    return
                for message in messages:
                    if link.closed.is_set():
                        return
                    try:
                        self.deliver(link.peer, message)
                    except Exception:
                        log.exception("receiver failed on a message from %s", short(link.peer))
        except (ConnectionError, OSError):
            pass
        finally:
            self._close_link(link, None)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        where = writer.get_extra_info("peername")
        if self._pending_handshakes >= self._max_pending_handshakes:
            # Unauthenticated connections cost a task each until their timeout: cap them.
            self._refuse(f"incoming {where}: too many handshakes in progress")
            writer.close()
            return
        self._pending_handshakes += 1
        try:
            hs = Handshake(self._private, None, prologue=self._prologue)
            async with asyncio.timeout(self._handshake_timeout):
                act_one = await reader.readexactly(ACT_ONE_SIZE)
                writer.write(hs.read_act_one(act_one))
                await writer.drain()
                transport = hs.read_act_three(await reader.readexactly(ACT_THREE_SIZE))
        except TimeoutError:
            self._refuse(f"incoming {where}: handshake timed out")
            writer.close()
            return
        except asyncio.IncompleteReadError:
            self._refuse(f"incoming {where}: closed during handshake")
            writer.close()
            return
        except HandshakeError as exc:
            self._refuse(f"incoming {where}: {exc.reason}")
            writer.close()
            return
        except (ConnectionError, OSError) as exc:
            self._refuse(f"incoming {where}: {exc.__class__.__name__}")
            writer.close()
            return
        finally:
            self._pending_handshakes -= 1
        peer = transport.remote_static
        if peer not in self._addresses or self._closing:
            self._refuse(f"incoming {where}: static key {peer.hex()} is not a member")
            writer.close()
            return
        self._install(_Link(peer, transport, reader, writer))

    def _maybe_dial(self, peer: PeerId) -> None:
        if self._closing or peer in self._dialers or self._addresses.get(peer) is None:
            return
        if self._listen_at is not None and self.node_id > peer:
            return  # the peer dials us
        self._dialers[peer] = asyncio.get_running_loop().create_task(self._dial_loop(peer))

    async def _dial_loop(self, peer: PeerId) -> None:
        delay = self._reconnect_min
        while not self._closing and peer in self._addresses:
            link = self._links.get(peer)
            if link is not None and not link.closed.is_set():
                await link.closed.wait()
                delay = self._reconnect_min
                continue
            try:
                link = await self._dial(peer)
            except TimeoutError:
                self._refuse(f"outgoing to {short(peer)}: handshake timed out")
            except (ConnectionError, OSError, asyncio.IncompleteReadError, ChannelError) as exc:
                log.debug("dial %s failed: %s", short(peer), exc.__class__.__name__)
            except HandshakeError as exc:
                self._refuse(f"outgoing to {short(peer)}: {exc.reason}")
            else:
                self._install(link)
                continue
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(self._reconnect_max, delay * 2)

    async def _dial(self, peer: PeerId) -> _Link:
        address = self._addresses.get(peer)
        if address is None:
            raise ChannelError(f"no address for {short(peer)}")
        async with asyncio.timeout(self._handshake_timeout):
            reader, writer = await asyncio.open_connection(address[0], address[1])
            try:
                hs = Handshake(self._private, peer, prologue=self._prologue)
                writer.write(hs.act_one())
                await writer.drain()
                act_three, transport = hs.read_act_two(await reader.readexactly(ACT_TWO_SIZE))
                writer.write(act_three)
                await writer.drain()
            except BaseException:
                writer.close()
                raise
        return _Link(peer, transport, reader, writer)

"""The asyncio side of the echo broadcasts: the driver that carries out the events a sans-I/O core
returns (`echo_base.Transmit`, `Delivered`, `Aborted`) over a `Channel`.

`EchoCore` (one echo per member per sender) and `RoundEchoCore` (one echo per member per round) are
different protocols behind the same interface; `BroadcastDriver` is the one piece of asyncio that runs
either: it feeds received frames to the core, sends what the core asks to send, keeps what it delivers,
runs the callbacks and wakes the waiters. `EchoBroadcast` and `RoundEchoBroadcast` are its two uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, TypeVar

from .channel import Channel, PeerId
from .echo_base import Delivered, EchoViolation, EquivocationDetected, EquivocationProof, Event, Transmit
from .wire import WireError

R = TypeVar("R")

Deliver = Callable[[bytes, PeerId, bytes], None]
Abort = Callable[[bytes, EquivocationProof], None]


class BroadcastCore(Protocol):
    """What the driver needs of a core; every method answers with the events to carry out."""

    node_id: PeerId

    def start_session(self, session_id: bytes, members: Sequence[PeerId]) -> list[Event]: ...

    def close_session(self, session_id: bytes) -> None: ...

    def proof(self, session_id: bytes) -> EquivocationProof | None: ...

    def broadcast(self, session_id: bytes, payload: bytes) -> list[Event]: ...

    def receive(self, peer: PeerId, data: bytes) -> list[Event]: ...


class BroadcastDriver:
    """Runs a broadcast core over `channel` (which must deliver reliably: a ReliableChannel or a Mux port)."""

    name: ClassVar[str]
    """How log lines name the protocol."""
    reject_reason: ClassVar[str]
    """How the reason given to `channel.reject` for an undecodable frame starts."""
    logger: ClassVar[logging.Logger]
    whole_rounds: ClassVar[bool] = False
    """Every message a step delivers is kept before the first deliver callback runs (a round is seen whole)."""

    def __init__(self, channel: Channel, core: BroadcastCore) -> None:
        self.channel = channel
        self.core = core
        self.node_id = core.node_id
        self._results: dict[bytes, dict[PeerId, bytes]] = {}
        self._changed: dict[bytes, asyncio.Event] = {}
        self._on_deliver: list[Deliver] = []
        self._on_abort: list[Abort] = []
        self._send_tasks: set[asyncio.Task[None]] = set()
        channel.on_receive(self._on_frame)

    def on_deliver(self, callback: Deliver) -> None:
        """`callback(session_id, sender, payload)` for each delivered message."""
        self._on_deliver.append(callback)

    def on_abort(self, callback: Abort) -> None:
        """`callback(session_id, proof)` when a session aborts on an equivocation."""
        self._on_abort.append(callback)

    def start_session(self, session_id: bytes, members: Sequence[PeerId]) -> None:
        self._results.setdefault(session_id, {})
        self._changed.setdefault(session_id, asyncio.Event())
        self._run(self.core.start_session(session_id, members))

    async def broadcast(self, session_id: bytes, payload: bytes) -> None:
        """Send this member's message to the session (started with `start_session`); returns once queued."""
        events = self.core.broadcast(session_id, payload)
        await asyncio.gather(*(self.channel.send(e.peer, e.frame) for e in events if isinstance(e, Transmit)))
        self._run([e for e in events if not isinstance(e, Transmit)])

    def proof(self, session_id: bytes) -> EquivocationProof | None:
        return self.core.proof(session_id)

    def delivered(self, session_id: bytes) -> dict[PeerId, bytes]:
        return dict(self._results.get(session_id, {}))

    def close_session(self, session_id: bytes) -> None:
        self.core.close_session(session_id)
        self._results.pop(session_id, None)
        self._changed.pop(session_id, None)

    async def _wait(self, session_id: bytes, ready: Callable[[dict[PeerId, bytes]], R | None]) -> R:
        """Wait until `ready(messages delivered so far)` is not None; raises EquivocationDetected if the
        session aborts first."""
        while True:
            proof = self.core.proof(session_id)
            if proof is not None:
                raise EquivocationDetected(session_id, proof)
            got = ready(self._results.get(session_id, {}))
            if got is not None:
                return got
            event = self._changed.setdefault(session_id, asyncio.Event())
            event.clear()
            await event.wait()

    def _on_frame(self, peer: PeerId, data: bytes) -> None:
        try:
            events = self.core.receive(peer, data)
        except WireError as exc:
            self.channel.reject(peer, f"{self.reject_reason}: {exc}")
            return
        except EchoViolation as exc:
            self.logger.warning("%s: %s", self.name, exc)
            return
        self._run(events)

    def _run(self, events: list[Event]) -> None:
        if self.whole_rounds:
            for ev in events:
                if isinstance(ev, Delivered):
                    self._keep(ev)
        for ev in events:
            if isinstance(ev, Transmit):
                task = asyncio.get_running_loop().create_task(self._send(ev.peer, ev.frame))
                self._send_tasks.add(task)
                task.add_done_callback(self._send_tasks.discard)
            elif isinstance(ev, Delivered):
                if not self.whole_rounds:
                    self._keep(ev)
                for cb in self._on_deliver:
                    cb(ev.session_id, ev.sender, ev.payload)
                self._wake(ev.session_id)
            else:
                self.logger.warning(
                    "%s session %s aborted: %s equivocated", self.name, ev.session_id.hex()[:16], ev.proof.sender.hex()
                )
                for aborted in self._on_abort:
                    aborted(ev.session_id, ev.proof)
                self._wake(ev.session_id)

    def _keep(self, ev: Delivered) -> None:
        self._results.setdefault(ev.session_id, {})[ev.sender] = ev.payload

    def _wake(self, session_id: bytes) -> None:
        event = self._changed.get(session_id)
        if event is not None:
            event.set()

    async def _send(self, peer: PeerId, frame: bytes) -> None:
        try:
            await self.channel.send(peer, frame)
        except Exception as exc:  # a full queue: the peer is gone for long; log, the session will time out
            self.logger.warning("%s: cannot send to %s: %s", self.name, peer.hex()[:16], exc)

"""The delivery protocol of the reliable layer as a state machine (sans-I/O).

`ReliableCore` takes messages to send, received frames and the current time, and returns frames to
transmit and messages to deliver; it does no I/O and keeps no clock, so every transition can be
tested in milliseconds. The asyncio driver that runs it over a lower channel is `reliable`.

Protocol, per ordered pair of members: each message is cut into chunks that fit the lower channel;
chunks carry consecutive sequence numbers, the last one flagged. The receiver acknowledges every data
frame with its cumulative position plus a 64-bit selective bitmap, buffers out-of-order chunks inside
a window, drops duplicates, and delivers whole messages in order. The sender keeps at most `window`
chunks in flight, retransmits each on its own timer with exponential backoff (and at once when the
link comes back), and keeps everything else queued, up to a bound. A sender's `incarnation` (a
number that grows across restarts) tells the receiver when to start over; `base` in each data frame
tells a receiver that lost its state where the oldest unacknowledged message starts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .channel import ChannelError, PeerId
from .wire import Oversized
from .wire_reliable import DATA_HEADER_LEN, AckFrame, DataFrame, decode_bundle, decode_reliable, encode_bundle

MAX_MESSAGE = 4 * 1024 * 1024
SACK_BITS = 64


class QueueFull(ChannelError):
    """The queue towards a peer is at its bound: the peer is not acknowledging; try again later."""


class MessageTooLarge(ChannelError):
    pass


@dataclass(frozen=True)
class Transmit:
    peer: PeerId
    frame: bytes


@dataclass(frozen=True)
class Delivered:
    peer: PeerId
    message: bytes


Event = Transmit | Delivered


@dataclass
class _InFlight:
    last: bool
    chunk: bytes
    deadline: float
    rto: float
    sent_at: float
    retransmitted: bool = False
    sacked: bool = False


@dataclass
class _SendState:
    next_seq: int = 0
    queue: deque[tuple[int, bool, bytes]] = field(default_factory=deque)
    inflight: dict[int, _InFlight] = field(default_factory=dict)
    message_starts: deque[int] = field(default_factory=deque)
    unacked_bytes: int = 0
    receiver: int | None = None
    staged: list[bytes] = field(default_factory=list)
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = 0.0

    def lowest_unacked(self) -> int:
        if self.inflight:
            return min(self.inflight)
        if self.queue:
            return self.queue[0][0]
        return self.next_seq

    def base(self) -> int:
        low = self.lowest_unacked()
        while len(self.message_starts) > 1 and self.message_starts[1] <= low:
            self.message_starts.popleft()
        if self.message_starts and self.message_starts[0] <= low:
            return self.message_starts[0]
        return low


@dataclass
class _RecvState:
    incarnation: int
    expected: int
    buffer: dict[int, tuple[bool, bytes]] = field(default_factory=dict)
    partial: list[bytes] = field(default_factory=list)
    partial_bytes: int = 0


class ReliableCore:
    """The delivery protocol for one member towards all its peers; no I/O, no clock of its own."""

    def __init__(
        self,
        *,
        incarnation: int,
        max_frame: int = 65535,
        max_message: int = MAX_MESSAGE,
        window: int = 64,
        recv_window: int = 128,
        max_queue_bytes: int = 64 * 1024 * 1024,
        rto_initial: float = 0.2,
        rto_max: float = 2.0,
    ) -> None:
        if max_frame <= DATA_HEADER_LEN:
            raise ValueError(f"frames of {max_frame} bytes cannot carry data")
        self.incarnation = incarnation
        self.chunk_size = min(max_frame - DATA_HEADER_LEN, 65535)
        self.max_message = max_message
        self.window = window
        self.recv_window = recv_window
        self.max_queue_bytes = max_queue_bytes
        self.rto_initial = rto_initial
        self.rto_max = rto_max
        self._send: dict[PeerId, _SendState] = {}
        self._recv: dict[PeerId, _RecvState] = {}
        self._ack_due: set[PeerId] = set()
        self.stats = {"data frames": 0, "timeouts": 0}
        self._sizes: dict[tuple[PeerId, int], int] = {}
        """Bytes each queued message counts against the bound, keyed by the seq of its last chunk."""

    # -- sending ---------------------------------------------------------------------------------

    def send(self, peer: PeerId, message: bytes, now: float, *, defer: bool = False) -> list[Event]:
        """Queue `message` for `peer`; raises QueueFull or MessageTooLarge (nothing is queued then).

        With `defer`, the message waits for `flush()`, which bundles everything waiting for a peer
        into as few frames as possible.
        """
        if len(message) > self.max_message:
            raise MessageTooLarge(f"message of {len(message)} bytes exceeds {self.max_message}")
        st = self._send.get(peer)
        if st is None:
            st = self._send[peer] = _SendState(rto=self.rto_initial)
        size = max(len(message), 1)
        if st.unacked_bytes + size > self.max_queue_bytes:
            raise QueueFull(f"queue to {peer.hex()[:16]} holds {st.unacked_bytes} bytes (bound {self.max_queue_bytes})")
        st.unacked_bytes += size
        st.staged.append(message)
        return [] if defer else self.flush(now, peer)

    def flush(self, now: float, peer: PeerId | None = None) -> list[Event]:
        """Bundle and transmit the messages `send(..., defer=True)` left waiting."""
        out: list[Event] = []
        for p in [peer] if peer is not None else list(self._send):
            st = self._send.get(p)
            if st is None or not st.staged:
                continue
            bundle: list[bytes] = []
            length = 0
            for m in st.staged:
                if bundle and length + 4 + len(m) > self.chunk_size:
                    self._queue_bundle(p, st, bundle)
                    bundle, length = [], 0
                bundle.append(m)
                length += 4 + len(m)
            self._queue_bundle(p, st, bundle)
            st.staged.clear()
            out += self._fill_window(p, st, now)
        return out

    def _queue_bundle(self, peer: PeerId, st: _SendState, messages: list[bytes]) -> None:
        data = encode_bundle(messages)
        chunks = [data[i : i + self.chunk_size] for i in range(0, len(data), self.chunk_size)]
        st.message_starts.append(st.next_seq)
        self._sizes[(peer, st.next_seq + len(chunks) - 1)] = sum(max(len(m), 1) for m in messages)
        for i, chunk in enumerate(chunks):
            st.queue.append((st.next_seq, i == len(chunks) - 1, chunk))
            st.next_seq += 1

    def _fill_window(self, peer: PeerId, st: _SendState, now: float) -> list[Event]:
        out: list[Event] = []
        while st.queue and len(st.inflight) < self.window:
            seq, last, chunk = st.queue.popleft()
            st.inflight[seq] = _InFlight(last, chunk, now + st.rto, st.rto, now)
            out.append(self._transmit(peer, st, seq))
        return out

    def _transmit(self, peer: PeerId, st: _SendState, seq: int) -> Transmit:
        self.stats["data frames"] += 1
        # Encoded at each (re)transmission so that `base` is current.
        fl = st.inflight[seq]
        return Transmit(peer, DataFrame(self.incarnation, st.base(), seq, fl.last, fl.chunk).encode())

    def tick(self, now: float) -> list[Event]:
        """Retransmit every frame whose timer ran out, doubling its timeout."""
        out: list[Event] = []
        for peer, st in self._send.items():
            for seq, fl in st.inflight.items():
                if fl.deadline <= now and not fl.sacked:
                    self.stats["timeouts"] += 1
                    fl.retransmitted = True
                    fl.rto = min(self.rto_max, fl.rto * 2)
                    fl.deadline = now + fl.rto
                    out.append(self._transmit(peer, st, seq))
        return out

    def peer_connected(self, peer: PeerId, now: float) -> list[Event]:
        """A link came (back) up: resend everything in flight now and restart the backoff."""
        st = self._send.get(peer)
        if st is None:
            return []
        out: list[Event] = []
        for seq in sorted(st.inflight):
            fl = st.inflight[seq]
            if fl.sacked:
                continue
            fl.retransmitted = True
            fl.rto = st.rto
            fl.deadline = now + fl.rto
            out.append(self._transmit(peer, st, seq))
        return out

    def next_deadline(self) -> float | None:
        deadlines = [fl.deadline for st in self._send.values() for fl in st.inflight.values() if not fl.sacked]
        return min(deadlines, default=None)

    def unacked(self, peer: PeerId | None = None) -> int:
        """Messages waiting plus chunks queued or in flight (towards `peer`, or all peers)."""
        states = [self._send[peer]] if peer is not None and peer in self._send else []
        if peer is None:
            states = list(self._send.values())
        return sum(len(st.staged) + len(st.queue) + len(st.inflight) for st in states)

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, peer: PeerId, data: bytes, now: float, *, defer_ack: bool = False) -> list[Event]:
        """Process a frame from `peer`; raises a WireError for undecodable or impossible input.

        With `defer_ack`, the acknowledgement is held back until `take_acks()`, so that a driver that
        processes a burst of frames answers it with one acknowledgement per peer.
        """
        frame = decode_reliable(data)
        if isinstance(frame, AckFrame):
            return self._on_ack(peer, frame, now)
        out = self._on_data(peer, frame)
        self._ack_due.add(peer)
        return out if defer_ack else out + self.take_acks()

    def take_acks(self) -> list[Event]:
        out: list[Event] = []
        for peer in self._ack_due:
            rs = self._recv[peer]
            selective = 0
            for seq in rs.buffer:
                bit = seq - rs.expected - 1
                if 0 <= bit < SACK_BITS:
                    selective |= 1 << bit
            ack = AckFrame(rs.incarnation, self.incarnation, rs.expected, selective)
            out.append(Transmit(peer, ack.encode()))
        self._ack_due.clear()
        return out

    def _on_ack(self, peer: PeerId, ack: AckFrame, now: float) -> list[Event]:
        st = self._send.get(peer)
        if ack.incarnation != self.incarnation or st is None:
            return []  # acknowledges frames of an earlier run of this member
        out: list[Event] = []
        if st.receiver is not None and ack.receiver != st.receiver:
            # The receiver restarted: what it held only selectively is gone; send it again.
            for seq, fl in st.inflight.items():
                if fl.sacked:
                    fl.sacked = False
                    fl.deadline = now + fl.rto
                    out.append(self._transmit(peer, st, seq))
        st.receiver = ack.receiver
        sample = None
        for seq in [s for s in st.inflight if s < ack.cumulative]:
            fl = st.inflight.pop(seq)
            if not fl.retransmitted:
                sample = now - fl.sent_at
            if fl.last:
                st.unacked_bytes -= self._sizes.pop((peer, seq))
        bits = ack.selective
        while bits:
            low = bits & -bits
            seq = ack.cumulative + low.bit_length()
            held = st.inflight.get(seq)
            if held is not None and not held.sacked:
                held.sacked = True
                if not held.retransmitted:
                    sample = now - held.sent_at
            bits ^= low
        if sample is not None:
            self._update_rto(st, sample)
        return out + self._fill_window(peer, st, now)

    def _update_rto(self, st: _SendState, sample: float) -> None:
        """RFC 6298 estimate from frames acknowledged without retransmission (Karn's rule)."""
        if st.srtt is None:
            st.srtt, st.rttvar = sample, sample / 2
        else:
            st.rttvar = 0.75 * st.rttvar + 0.25 * abs(st.srtt - sample)
            st.srtt = 0.875 * st.srtt + 0.125 * sample
        st.rto = min(self.rto_max, max(self.rto_initial, st.srtt + 4 * st.rttvar))

    def _on_data(self, peer: PeerId, frame: DataFrame) -> list[Event]:
        rs = self._recv.get(peer)
        if rs is None or frame.incarnation > rs.incarnation:
            rs = self._recv[peer] = _RecvState(frame.incarnation, frame.base)
        elif frame.incarnation < rs.incarnation:
            return []  # a frame from before the peer restarted
        if frame.base > rs.expected:
            # Only after this side restarted (and started from a delayed frame's older base): the
            # sender holds nothing below `base` any more, so pick up there, at a message boundary.
            rs.buffer = {s: c for s, c in rs.buffer.items() if s >= frame.base}
            rs.partial.clear()
            rs.partial_bytes = 0
            rs.expected = frame.base
        out: list[Event] = []
        if rs.expected <= frame.seq < rs.expected + self.recv_window:
            rs.buffer.setdefault(frame.seq, (frame.last, frame.chunk))
            while rs.expected in rs.buffer:
                last, chunk = rs.buffer.pop(rs.expected)
                rs.expected += 1
                rs.partial.append(chunk)
                rs.partial_bytes += len(chunk)
                if rs.partial_bytes > self.max_message + 4:
                    raise Oversized(f"message from {peer.hex()[:16]} exceeds {self.max_message} bytes")
                if last:
                    bundle = b"".join(rs.partial)
                    rs.partial.clear()
                    rs.partial_bytes = 0
                    out += [Delivered(peer, m) for m in decode_bundle(bundle, self.max_message)]
        return out

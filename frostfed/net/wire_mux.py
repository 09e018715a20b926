"""The frame of port multiplexing (`mux`): a port byte in front of the body of the layer above."""

from __future__ import annotations

from .wire import Malformed, Reader, frame_header

MUX = 0x21


def encode_mux(port: int, body: bytes) -> bytes:
    if not 0 <= port <= 255:
        raise Malformed(f"port {port}")
    return frame_header(MUX) + bytes((port,)) + body


def decode_mux(data: bytes) -> tuple[int, bytes]:
    r = Reader(data)
    r.header({MUX})
    port = r.u8("port")
    return port, data[3:]

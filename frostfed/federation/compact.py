"""Compact encodings for the signing messages: nonces as one hex string of concatenated 66-byte
values instead of a JSON list of hex strings.

A session request now carries one aggregate nonce per task instead of every signer's pubnonces (see
`frostfed.frost.roast.SignerSession` for why a signer may take the aggregate from the coordinator),
so it no longer grows with the number of signers: 66 bytes per task (132 hex characters) where a
67-signer session carried 67 JSON strings of 132 characters per task.
"""

from __future__ import annotations

from collections.abc import Sequence

from frostfed.federation.messages import Message, MessageError

NONCE_BYTES = 66
"""A BIP 445 pubnonce or aggregate nonce: two 33-byte points."""


def encode_nonces(nonces: Sequence[bytes]) -> str:
    """`nonces` (66 bytes each) as one hex string."""
    if any(len(n) != NONCE_BYTES for n in nonces):
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return b"".join(nonces).hex()


def decode_nonces(msg: Message, key: str, count: int) -> tuple[bytes, ...]:
    """Field `key` of `msg` as exactly `count` nonces; MessageError for anything else (not hex, another
    length). Whether each nonce is a pair of points is for the signer to check."""
    if count < 1:
        raise MessageError(f"{msg.kind}: at least one nonce is expected in '{key}'")
    raw = msg.hexbytes(key, NONCE_BYTES * count)
    return tuple(raw[k * NONCE_BYTES : (k + 1) * NONCE_BYTES] for k in range(count))

"""lightningd's `signmessage` / `checkmessage`: recoverable ECDSA over a prefixed double SHA-256.

The node signs `SHA256(SHA256("Lightning Signed Message:" || message))` with its node key and encodes
the 65-byte signature (header byte `31 + recid`, then r || s) in zbase32.
"""

from __future__ import annotations

import hashlib

from coincurve import PrivateKey, PublicKey

ZBASE32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
PREFIX = b"Lightning Signed Message:"


class ZbaseError(ValueError):
    """The text is not a 65-byte zbase32 signature."""


def message_hash(message: str) -> bytes:
    return hashlib.sha256(hashlib.sha256(PREFIX + message.encode()).digest()).digest()


def zbase32_encode(data: bytes) -> str:
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    pad = (-nbits) % 5
    bits <<= pad
    n = (nbits + pad) // 5
    return "".join(ZBASE32[(bits >> (5 * (n - 1 - i))) & 31] for i in range(n))


def zbase32_decode(text: str) -> bytes:
    acc = 0
    for ch in text:
        i = ZBASE32.find(ch)
        if i < 0:
            raise ZbaseError("zbase is not valid zbase32")
        acc = (acc << 5) | i
    nbits = len(text) * 5
    nbytes = nbits // 8
    return (acc >> (nbits - nbytes * 8)).to_bytes(nbytes, "big")


def sign(key: PrivateKey, message: str) -> dict[str, str]:
    """The result object of `signmessage`."""
    rec = key.sign_recoverable(message_hash(message), hasher=None)
    sig, recid = rec[:64], rec[64]
    return {
        "signature": sig.hex(),
        "recid": f"{recid:02x}",
        "zbase": zbase32_encode(bytes([31 + recid]) + sig),
    }


def recover(message: str, zbase: str) -> bytes:
    """The compressed public key that made `zbase` over `message`."""
    raw = zbase32_decode(zbase)
    if len(raw) != 65 or not 31 <= raw[0] <= 34:
        raise ZbaseError("zbase is not valid zbase32")
    try:
        pub = PublicKey.from_signature_and_message(raw[1:] + bytes([raw[0] - 31]), message_hash(message), hasher=None)
    except ValueError:
        raise ZbaseError("zbase is not valid zbase32") from None
    return pub.format(compressed=True)

"""Addresses from the threshold key: BIP32 public derivation and BIP86 Taproot output keys.

The federation never holds the threshold secret, so it derives receive keys publicly: an extended
public key made of the 33-byte threshold key (depth 0; its prefix may be 02 or 03) and a chain code
all members agree on, unhardened BIP32 children of it, and the BIP86 output key of each child. Each
step is a tweak of the threshold key, so BIP 445 signs for the output key when given
`signing_tweaks(...)`: the accumulated BIP32 tweak as a plain tweak, then the TapTweak as an x-only
tweak (in that order; the TapTweak as a plain tweak would only work for even-Y children).

The same extended key serialized as an xpub/tpub string lets bitcoind derive the same addresses
from a `tr(tpub.../0/*)` descriptor.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from frostfed.frost import secp

HARDENED = 0x80000000
VERSIONS = {"main": bytes.fromhex("0488B21E"), "test": bytes.fromhex("043587CF")}  # xpub, tpub
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class DerivationError(ValueError):
    """A BIP32 step has no valid child (I_L >= n or the child is infinity): BIP32 says skip the index."""


@dataclass(frozen=True)
class ExtendedPubKey:
    """A BIP32 extended public key."""

    key: bytes  # 33-byte compressed point
    chain_code: bytes  # 32 bytes
    depth: int = 0
    parent_fingerprint: bytes = bytes(4)
    child_number: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes):
            raise ValueError("the key must be 33 bytes")
        secp.cpoint(self.key)  # raises ValueError unless a valid compressed point
        if not isinstance(self.chain_code, bytes) or len(self.chain_code) != 32:
            raise ValueError("the chain code must be 32 bytes")
        if not 0 <= self.depth <= 255:
            raise ValueError("depth must be 0..255")
        if len(self.parent_fingerprint) != 4 or not 0 <= self.child_number < 2**32:
            raise ValueError("bad parent fingerprint or child number")

    def fingerprint(self) -> bytes:
        return hashlib.new("ripemd160", hashlib.sha256(self.key).digest()).digest()[:4]

    def serialize(self, network: str = "main") -> bytes:
        """The 78-byte BIP32 serialization."""
        if network not in VERSIONS:
            raise ValueError("network must be 'main' or 'test'")
        return (
            VERSIONS[network]
            + bytes([self.depth])
            + self.parent_fingerprint
            + self.child_number.to_bytes(4, "big")
            + self.chain_code
            + self.key
        )

    def to_string(self, network: str = "main") -> str:
        """The xpub (network "main") or tpub (network "test") string."""
        return base58check_encode(self.serialize(network))


def group_xpub(thresh_pk: bytes, chain_code: bytes) -> ExtendedPubKey:
    """The depth-0 extended public key of a threshold key (its prefix may be 02 or 03)."""
    if not isinstance(thresh_pk, bytes | bytearray) or not isinstance(chain_code, bytes | bytearray):
        raise ValueError("the threshold key and the chain code must be byte arrays")
    return ExtendedPubKey(bytes(thresh_pk), bytes(chain_code))


def derive_child(parent: ExtendedPubKey, index: int) -> tuple[ExtendedPubKey, bytes]:
    """BIP32 CKDpub: the child and the plain tweak I_L with child = parent + I_L*G."""
    if type(index) is not int or not 0 <= index < HARDENED:
        raise ValueError("only unhardened indices (0 <= index < 2^31) can be derived from a public key")
    digest = hmac.new(parent.chain_code, parent.key + index.to_bytes(4, "big"), hashlib.sha512).digest()
    il, ir = digest[:32], digest[32:]
    tweak = secp.int_from_bytes(il)
    if tweak >= secp.N:
        raise DerivationError(f"index {index} has no child key (I_L >= n)")
    child = secp.point_add(secp.cpoint(parent.key), secp.point_mul_g(tweak))
    if child is None:
        raise DerivationError(f"index {index} has no child key (point at infinity)")
    return (
        ExtendedPubKey(secp.cbytes(child), ir, parent.depth + 1, parent.fingerprint(), index),
        il,
    )


def derive_path(parent: ExtendedPubKey, path: Sequence[int]) -> tuple[ExtendedPubKey, bytes]:
    """Derive along `path`; returns the descendant and the accumulated plain tweak (32 bytes).

    Plain tweaks add up: descendant = parent + (sum of the steps' I_L) * G. An empty path gives
    the zero tweak, which BIP 445 refuses: pass no tweak in that case.
    """
    node = parent
    acc = 0
    for index in path:
        node, il = derive_child(node, index)
        acc = (acc + secp.int_from_bytes(il)) % secp.N
    return node, secp.bytes_from_int(acc)


def taptweak(internal_key: bytes) -> bytes:
    """BIP86/BIP341 tweak for a key-path-only output: hash_TapTweak(x-only internal key)."""
    if not isinstance(internal_key, bytes | bytearray):
        raise ValueError("the internal key must be 32 (x-only) or 33 (compressed) bytes")
    internal_key = bytes(internal_key)
    xonly = internal_key[1:] if len(internal_key) == 33 else internal_key
    if len(xonly) != 32:
        raise ValueError("the internal key must be 32 (x-only) or 33 (compressed) bytes")
    return secp.tagged_hash("TapTweak", xonly)


def taproot_output_key(internal_key: bytes) -> tuple[bytes, int, bytes]:
    """BIP86 output key of an internal key: (32-byte x-only output key, its Y parity, the TapTweak)."""
    tweak = taptweak(internal_key)
    internal_key = bytes(internal_key)
    xonly = internal_key[1:] if len(internal_key) == 33 else internal_key
    t = secp.int_from_bytes(tweak)
    if t >= secp.N:
        raise ValueError("TapTweak is out of range")
    Q = secp.point_add(secp.lift_x(xonly), secp.point_mul_g(t))
    if Q is None:
        raise ValueError("the Taproot output key is infinity")
    return secp.xbytes(Q), 0 if secp.has_even_y(Q) else 1, tweak


def signing_tweaks(root: ExtendedPubKey, path: Sequence[int]) -> tuple[list[bytes], list[bool], bytes]:
    """BIP 445 tweaks that make the threshold key sign for the BIP86 output of `root/path`.

    Returns (tweaks, is_xonly, output_key): the accumulated BIP32 tweak (plain; omitted for an
    empty path) then the TapTweak of the child (x-only), and the 32-byte output key they give.
    """
    child, acc = derive_path(root, path)
    out, _, tap = taproot_output_key(child.key)
    tweaks: list[bytes] = []
    modes: list[bool] = []
    if path:
        tweaks.append(acc)
        modes.append(False)
    tweaks.append(tap)
    modes.append(True)
    return tweaks, modes, out


def base58check_encode(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    num = int.from_bytes(data, "big")
    out = ""
    while num:
        num, rem = divmod(num, 58)
        out = _B58[rem] + out
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + out


def base58check_decode(s: str) -> bytes:
    num = 0
    for ch in s:
        idx = _B58.find(ch)
        if idx < 0:
            raise ValueError(f"invalid base58 character {ch!r}")
        num = num * 58 + idx
    pad = len(s) - len(s.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    data = bytes(pad) + body
    if len(data) < 4:
        raise ValueError("base58check string too short")
    payload, check = data[:-4], data[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        raise ValueError("base58check checksum mismatch")
    return payload


def parse_xpub(s: str) -> tuple[ExtendedPubKey, str]:
    """An xpub/tpub string back to (extended key, network)."""
    if not isinstance(s, str):
        raise ValueError("an extended key string is expected")
    raw = base58check_decode(s)
    if len(raw) != 78:
        raise ValueError("an extended key is 78 bytes")
    network = next((name for name, v in VERSIONS.items() if raw[:4] == v), None)
    if network is None:
        raise ValueError("not an xpub or tpub")
    key = ExtendedPubKey(raw[45:78], raw[13:45], raw[4], raw[5:9], int.from_bytes(raw[9:13], "big"))
    return key, network

"""Taproot outputs (BIP 341), their bech32m addresses (BIP 350), and decoding of any standard address.

python-bitcoinlib 0.12 predates Taproot: its segwit encoder writes bech32 for every version, which makes
invalid v1 addresses, and it has no TapTweak. What it lacks lives here; transactions and scripts stay
python-bitcoinlib objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin import base58
from bitcoin.core.serialize import VarIntSerializer
from coincurve import PrivateKey

from frostfed.bitcoin.networks import NAMES, NETWORKS, Network, NetworkError, network
from frostfed.frost.secp import N, bytes_from_int, has_even_y, int_from_bytes, lift_x, tagged_hash, xbytes

TAPROOT_LEAF_TAPSCRIPT = 0xC0

HRP = {name: net.hrp for name, net in ((n, network(n)) for n in NAMES)}
"""Human-readable part of segwit addresses per network name (Bitcoin Core's and Core Lightning's names)."""


class AddressError(ValueError):
    """An address that does not decode, or does not belong to the expected network."""


class TaprootError(ValueError):
    """A key or script tree that cannot form a Taproot output."""


# --- BIP 173 / BIP 350 ----------------------------------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST = 1
_BECH32M_CONST = 0x2BC830A3


def _polymod(values: Sequence[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: Sequence[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise AddressError("invalid data value")
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise AddressError("invalid padding")
    return out


def encode_segwit_address(hrp: str, version: int, program: bytes) -> str:
    """Segwit address: bech32 for version 0, bech32m for versions 1 to 16 (BIP 350)."""
    if not 0 <= version <= 16:
        raise AddressError(f"witness version {version} out of range")
    if not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise AddressError(f"witness program of {len(program)} bytes is invalid for version {version}")
    data = [version, *_convertbits(program, 8, 5, True)]
    const = _BECH32_CONST if version == 0 else _BECH32M_CONST
    values = _hrp_expand(hrp) + data
    polymod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def decode_segwit_address(hrp: str, address: str) -> tuple[int, bytes]:
    """(witness version, program) of a segwit address of network `hrp`; AddressError otherwise."""
    if any(ord(c) < 33 or ord(c) > 126 for c in address):
        raise AddressError("address has characters outside printable ASCII")
    if address.lower() != address and address.upper() != address:
        raise AddressError("address mixes upper and lower case")
    addr = address.lower()
    pos = addr.rfind("1")
    if pos < 1 or pos + 7 > len(addr) or len(addr) > 90:
        raise AddressError("not a bech32 string")
    if addr[:pos] != hrp:
        raise AddressError(f"address is for network '{addr[:pos]}', expected '{hrp}'")
    try:
        data = [_CHARSET.index(c) for c in addr[pos + 1 :]]
    except ValueError:
        raise AddressError("address has a character outside the bech32 alphabet") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        raise AddressError("address checksum is wrong")
    version = data[0]
    if version > 16:
        raise AddressError(f"witness version {version} out of range")
    program = bytes(_convertbits(data[1:-6], 5, 8, False))
    if not 2 <= len(program) <= 40 or (version == 0 and len(program) not in (20, 32)):
        raise AddressError(f"witness program of {len(program)} bytes is invalid for version {version}")
    if (version == 0) != (const == _BECH32_CONST):
        raise AddressError("wrong checksum variant for the witness version (bech32 vs bech32m)")
    return version, program


def _witness_script(version: int, program: bytes) -> bytes:
    opcode = 0 if version == 0 else 0x50 + version
    return bytes([opcode, len(program)]) + program


def _network(name: str | Network) -> Network:
    try:
        return network(name)
    except NetworkError as e:
        raise AddressError(str(e)) from None


def _hrp(name: str | Network) -> str:
    return _network(name).hrp


def script_from_address(address: str, network: str | Network) -> bytes:
    """Output script of any standard address (base58 P2PKH/P2SH or segwit of any version) of `network`;
    an address of another network is refused (a testnet address on mainnet would burn the payout)."""
    net = _network(network)
    hrp = net.hrp
    if address.lower().startswith(hrp + "1"):
        return _witness_script(*decode_segwit_address(hrp, address))
    for other in sorted({n.hrp for n in NETWORKS} - {hrp}, key=len, reverse=True):
        if address.lower().startswith(other + "1"):
            raise AddressError(
                f"'{address}' is an address of another network ({other}1...), expected {net.name} ({hrp}1...)"
            )
    try:
        raw = base58.decode(address)
    except (base58.InvalidBase58Error, ValueError) as e:
        raise AddressError(
            f"'{address}' is neither a segwit address of network {net.name} ({hrp}1...) nor base58: {e}"
        ) from None
    if len(raw) != 25 or hashlib.sha256(hashlib.sha256(raw[:21]).digest()).digest()[:4] != raw[21:]:
        raise AddressError(f"'{address}' has a wrong base58 checksum or length")
    p2pkh, p2sh = net.p2pkh, net.p2sh
    if raw[0] == p2pkh:
        return b"\x76\xa9\x14" + raw[1:21] + b"\x88\xac"
    if raw[0] == p2sh:
        return b"\xa9\x14" + raw[1:21] + b"\x87"
    raise AddressError(f"'{address}' has base58 version {raw[0]}, which is not a {net.name} address")


def address_from_script(script: bytes, network: str | Network) -> str | None:
    """Address of a standard output script, or None for scripts without one (e.g. OP_RETURN)."""

    def b58check(version: int, payload: bytes) -> str:
        raw = bytes([version]) + payload
        return base58.encode(raw + hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4])

    if len(script) >= 4 and (script[0] == 0 or 0x51 <= script[0] <= 0x60) and script[1] == len(script) - 2:
        version = 0 if script[0] == 0 else script[0] - 0x50
        try:
            return encode_segwit_address(_hrp(network), version, script[2:])
        except AddressError:
            return None
    try:
        p2pkh, p2sh = _network(network).p2pkh, _network(network).p2sh
    except AddressError:
        return None
    if len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return b58check(p2pkh, script[3:23])
    if len(script) == 23 and script[:2] == b"\xa9\x14" and script[22:] == b"\x87":
        return b58check(p2sh, script[2:22])
    return None


# --- BIP 341 outputs --------------------------------------------------------------------------------------


def p2tr_script(output_key: bytes) -> bytes:
    """scriptPubKey `OP_1 <32-byte x-only output key>`."""
    if len(output_key) != 32:
        raise TaprootError("a Taproot output key is 32 bytes (x-only)")
    return b"\x51\x20" + output_key


def p2tr_address(output_key: bytes, network: str | Network) -> str:
    return encode_segwit_address(_hrp(network), 1, p2tr_script(output_key)[2:])


def taptweak(internal_key: bytes, merkle_root: bytes | None = None) -> bytes:
    """t = hash_TapTweak(p || merkle_root), the scalar BIP 341 adds to the internal key (as 32 bytes)."""
    if len(internal_key) != 32:
        raise TaprootError("internal key must be 32 bytes (x-only)")
    if merkle_root is not None and len(merkle_root) != 32:
        raise TaprootError("merkle root must be 32 bytes")
    t = tagged_hash("TapTweak", internal_key + (merkle_root or b""))
    if int_from_bytes(t) >= N:
        raise TaprootError("TapTweak is not a valid scalar")
    return t


def taproot_output_key(internal_key: bytes, merkle_root: bytes | None = None) -> tuple[bytes, int]:
    """(x-only output key Q, parity of Q's y) for internal key P: Q = lift_x(P) + t*G (BIP 341)."""
    try:
        p = lift_x(internal_key)
    except ValueError as e:
        raise TaprootError(f"internal key is not a valid x-only key: {e}") from None
    try:
        q = p.add(taptweak(internal_key, merkle_root))
    except ValueError:
        raise TaprootError("tweaked output key is the point at infinity") from None
    return xbytes(q), 0 if has_even_y(q) else 1


def bip86_output_key(internal_key: bytes) -> bytes:
    """Output key of a key-path-only output (BIP 86: TapTweak over the key alone)."""
    return taproot_output_key(internal_key, None)[0]


def taproot_tweak_seckey(seckey: bytes, merkle_root: bytes | None = None) -> bytes:
    """Secret key for a single-key key-path spend (BIP 341 `taproot_tweak_seckey`)."""
    d0 = int_from_bytes(seckey)
    if not 0 < d0 < N:
        raise TaprootError("secret key out of range")
    pub = PrivateKey(seckey).public_key
    d = d0 if has_even_y(pub) else N - d0
    t = int_from_bytes(taptweak(xbytes(pub), merkle_root))
    out = (d + t) % N
    if out == 0:
        raise TaprootError("tweaked secret key is zero")
    return bytes_from_int(out)


# --- script trees (script-path commitments; the federation spends by key path only) -------------------


@dataclass(frozen=True)
class TapLeaf:
    script: bytes
    leaf_version: int = TAPROOT_LEAF_TAPSCRIPT


TapTree = TapLeaf | tuple["TapTree", "TapTree"]
"""A leaf, or a branch given as a pair of subtrees (BIP 341's nested-list tree)."""


_ser_compact_size = VarIntSerializer.serialize


def tapleaf_hash(leaf: TapLeaf) -> bytes:
    return tagged_hash("TapLeaf", bytes([leaf.leaf_version]) + _ser_compact_size(len(leaf.script)) + leaf.script)


def tapbranch_hash(a: bytes, b: bytes) -> bytes:
    return tagged_hash("TapBranch", min(a, b) + max(a, b))


def taptree_commitments(tree: TapTree) -> tuple[list[tuple[TapLeaf, bytes]], bytes]:
    """([(leaf, merkle path)] in tree order, merkle root), BIP 341's `taproot_tree_helper`."""
    if isinstance(tree, TapLeaf):
        return [(tree, b"")], tapleaf_hash(tree)
    left, left_hash = taptree_commitments(tree[0])
    right, right_hash = taptree_commitments(tree[1])
    paths = [(leaf, path + right_hash) for leaf, path in left] + [(leaf, path + left_hash) for leaf, path in right]
    return paths, tapbranch_hash(left_hash, right_hash)


def control_block(internal_key: bytes, tree: TapTree, leaf_index: int) -> bytes:
    """Control block for spending leaf number `leaf_index` (in tree order) by script path."""
    paths, root = taptree_commitments(tree)
    if not 0 <= leaf_index < len(paths):
        raise TaprootError(f"the tree has {len(paths)} leaves, no leaf {leaf_index}")
    leaf, path = paths[leaf_index]
    _, parity = taproot_output_key(internal_key, root)
    return bytes([leaf.leaf_version | parity]) + internal_key + path

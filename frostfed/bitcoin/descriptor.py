"""Output descriptors (BIP 380/386) of the federation's addresses, for watch-only wallets.

The federation's receive addresses are BIP 86 outputs of unhardened children of its extended public
key, which the descriptor `tr(<xpub>/<branch>/*)` states exactly; bitcoind derives the same addresses.
"""

from __future__ import annotations

_INPUT_CHARSET = "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ "
_CHECKSUM_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0xF5DEE51989, 0xA9FDCA3312, 0x1BAB10E32D, 0x3706B1677A, 0x644D626FFD)


class DescriptorError(ValueError):
    pass


def _polymod(symbols: list[int]) -> int:
    chk = 1
    for value in symbols:
        top = chk >> 35
        chk = (chk & 0x7FFFFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return chk


def _expand(desc: str) -> list[int]:
    symbols: list[int] = []
    groups: list[int] = []
    for c in desc:
        v = _INPUT_CHARSET.find(c)
        if v < 0:
            raise DescriptorError(f"character {c!r} cannot appear in a descriptor")
        symbols.append(v & 31)
        groups.append(v >> 5)
        if len(groups) == 3:
            symbols.append(groups[0] * 9 + groups[1] * 3 + groups[2])
            groups = []
    if len(groups) == 1:
        symbols.append(groups[0])
    elif len(groups) == 2:
        symbols.append(groups[0] * 3 + groups[1])
    return symbols


def descriptor_checksum(desc: str) -> str:
    """The 8-character checksum of a descriptor without one (BIP 380)."""
    value = _polymod([*_expand(desc), 0, 0, 0, 0, 0, 0, 0, 0]) ^ 1
    return "".join(_CHECKSUM_CHARSET[(value >> (5 * (7 - i))) & 31] for i in range(8))


def with_checksum(desc: str) -> str:
    """`desc#checksum`; a descriptor that already has a checksum must have the right one."""
    body, sep, given = desc.partition("#")
    expected = descriptor_checksum(body)
    if sep and given != expected:
        raise DescriptorError(f"descriptor checksum is {given!r}, expected {expected!r}")
    return f"{body}#{expected}"


def federation_descriptor(xpub: str, branch: int = 0) -> str:
    """`tr(<xpub>/<branch>/*)#checksum`: every BIP 86 address of the federation's key on `branch`."""
    if not 0 <= branch < 0x80000000:
        raise DescriptorError("branch must be an unhardened index")
    return with_checksum(f"tr({xpub}/{branch}/*)")

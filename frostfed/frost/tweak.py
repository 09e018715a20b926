"""BIP 445 "Tweaking the Threshold Public Key": the Tweak Context and ApplyTweak.

Plain tweaks serve BIP32 child derivation, x-only tweaks the BIP341 TapTweak. The context tracks the
accumulated tweak `tacc` and sign `gacc` so that signers can correct their shares (see the BIP's
"Negation of the Secret Share when Signing").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from coincurve import PublicKey

from frostfed.frost import secp


class TweakContext(NamedTuple):
    Q: PublicKey
    gacc: int
    tacc: int


def tweak_ctx_init(thresh_pk: bytes) -> TweakContext:
    """TweakCtxInit: fails (ValueError) unless `thresh_pk` is a 33-byte compressed point."""
    if not isinstance(thresh_pk, bytes | bytearray):
        raise ValueError("The threshold public key must be a 33-byte array.")
    Q = secp.cpoint(bytes(thresh_pk))
    return TweakContext(Q, 1, 0)


def get_xonly_pk(tweak_ctx: TweakContext) -> bytes:
    """GetXonlyPubkey: the 32-byte key a signature for this context verifies under."""
    return secp.xbytes(tweak_ctx.Q)


def get_plain_pk(tweak_ctx: TweakContext) -> bytes:
    """GetPlainPubkey: the 33-byte key; its first byte & 1 is the Taproot output parity bit."""
    return secp.cbytes(tweak_ctx.Q)


def apply_tweak(tweak_ctx: TweakContext, tweak: bytes, is_xonly_t: bool) -> TweakContext:
    """ApplyTweak: Q' = g*Q + t*G with g = -1 only for an x-only tweak of an odd-Y key."""
    if not isinstance(tweak, bytes | bytearray) or len(tweak) != 32:
        raise ValueError("The tweak must be a 32-byte array.")
    Q, gacc, tacc = tweak_ctx
    g = -1 if is_xonly_t and not secp.has_even_y(Q) else 1
    t = secp.int_from_bytes(bytes(tweak))
    if not 0 < t < secp.N:
        raise ValueError("The tweak value is out of range.")
    Q_ = secp.point_add(Q if g == 1 else secp.point_neg(Q), secp.point_mul_g(t))
    if Q_ is None:
        raise ValueError("The result of tweaking cannot be infinity.")
    return TweakContext(Q_, (g * gacc) % secp.N, (t + g * tacc) % secp.N)


def apply_tweaks(thresh_pk: bytes, tweaks: Sequence[bytes], is_xonly: Sequence[bool]) -> TweakContext:
    """TweakCtxInit followed by ApplyTweak for each tweak, as GetSessionValues does.

    Cached: every partial signature of a session (and every session on the same derived key) needs
    the same context.
    """
    if len(tweaks) != len(is_xonly):
        raise ValueError("The tweaks and is_xonly arrays must have the same length.")
    for tw in tweaks:
        if not isinstance(tw, bytes | bytearray) or len(tw) != 32:
            raise ValueError("The tweak must be a 32-byte array.")
    if not isinstance(thresh_pk, bytes | bytearray):
        raise ValueError("The threshold public key must be a 33-byte array.")
    key = (bytes(thresh_pk), tuple(bytes(tw) for tw in tweaks), tuple(bool(x) for x in is_xonly))
    return _apply_tweaks_cached(*key)


@lru_cache(maxsize=1024)
def _apply_tweaks_cached(thresh_pk: bytes, tweaks: tuple[bytes, ...], is_xonly: tuple[bool, ...]) -> TweakContext:
    ctx = tweak_ctx_init(thresh_pk)
    for tweak, x in zip(tweaks, is_xonly, strict=True):
        ctx = apply_tweak(ctx, tweak, x)
    return ctx

"""Junk in any argument of the public signing functions gives a specific error, never a crash.

Each call starts from valid arguments and replaces one of them with a random wrong value (wrong type,
length or content); the only acceptable outcomes are success, ValueError, TypeError (a value of the
wrong type altogether) or InvalidContributionError.
"""

from __future__ import annotations

import contextlib
from typing import Any

from dealer import trusted_dealer
from hypothesis import given, settings
from hypothesis import strategies as st

from frostfed.frost.derivation import derive_child, group_xpub, parse_xpub, taproot_output_key
from frostfed.frost.errors import InvalidContributionError
from frostfed.frost.signing import (
    SessionContext,
    SignersContext,
    deterministic_sign,
    nonce_agg,
    nonce_gen,
    partial_sig_agg,
    partial_sig_verify,
    sign,
    validate_signers_ctx,
)
from frostfed.frost.tweak import apply_tweaks

ACCEPTED = (ValueError, TypeError, InvalidContributionError)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.text(max_size=4),
    st.binary(max_size=70),
    st.lists(st.one_of(st.binary(max_size=70), st.integers(), st.none()), max_size=4),
)

KEYS = trusted_dealer(2, 3, seed=42)
IDS = [0, 2]
CTX = SignersContext(3, 2, IDS, [KEYS.pubshares[i] for i in IDS], KEYS.thresh_pk)
MSG = b"m" * 32
PUBNONCES = [nonce_gen(KEYS.secshares[i])[1] for i in IDS]
AGGNONCE = nonce_agg(PUBNONCES, IDS)
TWEAKS = [b"\x01" * 32]
MODES = [True]


def _call(fn: Any, args: list[Any], position: int, value: Any) -> None:
    args = list(args)
    args[position] = value
    with contextlib.suppress(ACCEPTED):
        fn(*args)


def _ctx_with(field: int, value: Any) -> Any:
    parts = list(CTX)
    parts[field] = value
    return SignersContext(*parts)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=7), st.integers(min_value=0, max_value=4), junk)
def test_signing_functions_refuse_junk_cleanly(which: int, position: int, value: Any) -> None:
    session = SessionContext(CTX, AGGNONCE, TWEAKS, MODES, MSG)
    if which == 0:
        _call(validate_signers_ctx, [_ctx_with(position, value)], 0, _ctx_with(position, value))
    elif which == 1:
        _call(nonce_gen, [KEYS.secshares[0], KEYS.pubshares[0], KEYS.thresh_pk[1:], MSG, b""], position, value)
    elif which == 2:
        _call(nonce_agg, [PUBNONCES, IDS], position % 2, value)
    elif which == 3:
        parts = [CTX, AGGNONCE, TWEAKS, MODES, MSG]
        parts[position] = value
        secnonce, _ = nonce_gen(KEYS.secshares[0])
        with contextlib.suppress(ACCEPTED):
            sign(secnonce, KEYS.secshares[0], 0, SessionContext(*parts))
        _call(sign, [nonce_gen()[0], KEYS.secshares[0], 0, session], position % 4, value)
    elif which == 4:
        args = [b"\x01" * 32, PUBNONCES, CTX, TWEAKS, MODES, MSG, 0]
        _call(partial_sig_verify, args, position, value)
        _call(partial_sig_verify, args, position + 2, value)
    elif which == 5:
        _call(partial_sig_agg, [[b"\x01" * 32, b"\x02" * 32], IDS, session], position % 3, value)
        _call(partial_sig_agg, [[b"\x01" * 32, value], IDS, session], 0, [b"\x01" * 32, value])
    elif which == 6:
        args = [KEYS.secshares[0], 0, PUBNONCES[1], CTX, TWEAKS, MODES, MSG, None]
        _call(deterministic_sign, args, position, value)
        _call(deterministic_sign, args, position + 3, value)
    else:
        _call(apply_tweaks, [KEYS.thresh_pk, TWEAKS, MODES], position % 3, value)
        _call(apply_tweaks, [KEYS.thresh_pk, [value], MODES], 0, KEYS.thresh_pk)
        _call(taproot_output_key, [value], 0, value)
        _call(parse_xpub, [value], 0, value)
        _call(derive_child, [group_xpub(KEYS.thresh_pk, bytes(32)), value], 1, value)
        _call(group_xpub, [KEYS.thresh_pk, value], 1, value)

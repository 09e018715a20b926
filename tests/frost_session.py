"""A whole BIP 445 session run locally, for tests that need a real threshold signature."""

from __future__ import annotations

from dealer import DealtKeys

from frostfed.frost.signing import (
    SessionContext,
    SignersContext,
    nonce_agg,
    nonce_gen,
    partial_sig_agg,
    partial_sig_verify,
    sign,
    validate_signers_ctx,
)


def full_sign(
    keys: DealtKeys, t: int, signer_ids: list[int], msg: bytes, tweaks: list[bytes], is_xonly: list[bool]
) -> tuple[bytes, SignersContext, list[bytes], list[bytes], SessionContext]:
    """Sign `msg` with the given signers; every partial signature is verified on the way.

    Returns (signature, signers context, pubnonces, partial signatures, session context).
    """
    n = len(keys.ids)
    ctx = SignersContext(n, t, signer_ids, [keys.pubshares[i] for i in signer_ids], keys.thresh_pk)
    validate_signers_ctx(ctx)
    nonces = [nonce_gen(keys.secshares[i], keys.pubshares[i], None, msg, None) for i in signer_ids]
    pubnonces = [p for _, p in nonces]
    aggnonce = nonce_agg(pubnonces, signer_ids)
    session = SessionContext(ctx, aggnonce, tweaks, is_xonly, msg)
    psigs = [sign(sec, keys.secshares[i], i, session) for (sec, _), i in zip(nonces, signer_ids, strict=True)]
    for k in range(len(signer_ids)):
        assert partial_sig_verify(psigs[k], pubnonces, ctx, tweaks, is_xonly, msg, k)
    return partial_sig_agg(psigs, signer_ids, session), ctx, pubnonces, psigs, session

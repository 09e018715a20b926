"""The signer contexts of one threshold key, kept per signer set.

A ROAST run starts a session for every t signers that become ready, and each member signs in some of
them; the coordinator verifies every reply. Each needs the BIP 445 Signers Context of the session's
set: its public shares in set order and, inside `signing`, the validated key material with the
Lagrange coefficients. `SignerSets` builds the context of a set once and hands the same object out
again, so that validation (the threshold key check, the coefficients) is paid once per set, not once
per session, reply and task. It holds no secret.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

from frostfed.frost.signing import SignersContext, validate_signers_ctx


class SignerSets:
    """Validated Signers Contexts of one key (n, t, public shares, threshold key), the `size` most
    recently used ones."""

    def __init__(self, n: int, t: int, thresh_pk: bytes, pubshares: Sequence[bytes], size: int = 64) -> None:
        self.n = n
        self.t = t
        self.thresh_pk = bytes(thresh_pk)
        self.pubshares = tuple(bytes(p) for p in pubshares)
        self.size = size
        self._sets: OrderedDict[tuple[int, ...], SignersContext] = OrderedDict()
        self._lock = threading.Lock()

    def context(self, ids: Sequence[int]) -> SignersContext:
        """The Signers Context of `ids` (in this order), validated by BIP 445's ValidateSignersCtx when
        first built; raises ValueError for a set that is not valid key material of this key."""
        key = tuple(ids)
        with self._lock:
            ctx = self._sets.get(key)
            if ctx is not None:
                self._sets.move_to_end(key)
                return ctx
        if not all(type(i) is int and 0 <= i < len(self.pubshares) for i in key):
            raise ValueError("a signer id is not a participant of this key")
        ctx = SignersContext(self.n, self.t, key, tuple(self.pubshares[i] for i in key), self.thresh_pk)
        validate_signers_ctx(ctx)
        with self._lock:
            self._sets[key] = ctx
            if len(self._sets) > self.size:
                self._sets.popitem(last=False)
        return ctx


@lru_cache(maxsize=16)
def signer_sets(n: int, t: int, thresh_pk: bytes, pubshares: tuple[bytes, ...]) -> SignerSets:
    """The one `SignerSets` of a key in this process, shared by its signers and coordinators (a member
    makes a new `RoastSigner` per request; the sets outlive it)."""
    return SignerSets(n, t, thresh_pk, pubshares)

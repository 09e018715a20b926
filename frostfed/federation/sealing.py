"""Secrets at rest: a member's key share and other secrets are sealed with ChaCha20-Poly1305 under a
key derived from the member's host seed (or from a passphrase), so a copied database alone reveals
nothing and a tampered one is refused."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

VERSION = b"\x01"


class SealError(Exception):
    """A sealed secret could not be opened: wrong key or tampered data."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("sealing key must be 32 bytes")
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def from_seed(cls, seed: bytes) -> Sealer:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"frostfed/seal/v1")
        return cls(hkdf.derive(seed))

    @classmethod
    def from_passphrase(cls, passphrase: bytes, salt: bytes) -> Sealer:
        return cls(Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase))

    def seal(self, secret: bytes, context: bytes) -> bytes:
        """`context` (e.g. epoch and member id) is bound in, so a sealed value cannot be moved."""
        nonce = os.urandom(12)
        return VERSION + nonce + self._aead.encrypt(nonce, secret, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != VERSION:
            raise SealError("sealed secret is malformed or of an unknown version")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], context)
        except InvalidTag:
            raise SealError("sealed secret does not open: wrong key or tampered data") from None

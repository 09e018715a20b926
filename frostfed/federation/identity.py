"""A standalone member's identity: one secp256k1 key in a file readable by the owner only.

Its public key is the member id used by Noise and in the member list; the ChillDKG host seed and
the sealing key are derived from it, so the one file is all a member must back up (with the
public DKG recovery data, which every member holds)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from coincurve import PrivateKey

from frostfed.frost.secp import tagged_hash


class IdentityError(Exception):
    pass


class Identity:
    def __init__(self, secret: bytes) -> None:
        self._key = PrivateKey(secret)
        self.id: bytes = self._key.public_key.format()

    @property
    def private_key(self) -> PrivateKey:
        return self._key

    def host_seed(self) -> bytes:
        """ChillDKG host seed: a hash of the identity secret under a tag of its own."""
        return tagged_hash("frostfed/chilldkg-hostseed", self._key.secret)

    def bond_secret(self) -> bytes:
        """The key that may spend this member's fidelity bond after its lock time."""
        return tagged_hash("frostfed/bond-key", self._key.secret)

    def seal_seed(self) -> bytes:
        return tagged_hash("frostfed/seal-seed", self._key.secret)

    def __repr__(self) -> str:  # never show the secret
        return f"Identity({self.id.hex()})"


SEALED_PREFIX = "frostfed-sealed-identity-v1"


def create_identity_file(path: Path, passphrase: bytes | None = None) -> Identity:
    """A new identity; with a passphrase the file holds the key sealed under it (scrypt, then
    ChaCha20-Poly1305), so a copy of the file alone is worthless."""
    from frostfed.federation.sealing import Sealer

    secret = PrivateKey().secret
    if passphrase is not None:
        salt = os.urandom(16)
        sealed = Sealer.from_passphrase(passphrase, salt).seal(secret, SEALED_PREFIX.encode())
        text = f"{SEALED_PREFIX}:{salt.hex()}:{sealed.hex()}\n"
    else:
        text = secret.hex() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Identity(secret)


def load_identity_file(path: Path, passphrase: bytes | None = None) -> Identity:
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as e:
        raise IdentityError(f"cannot read identity key file {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(f"identity key file {path} is readable by others; chmod 600 it")
    if raw.startswith(SEALED_PREFIX.encode()):
        return _open_sealed(path, raw, passphrase)
    try:
        secret = bytes.fromhex(raw.decode("ascii").strip())
        if len(secret) != 32:
            raise ValueError
        return Identity(secret)
    except ValueError:  # UnicodeDecodeError included
        raise IdentityError(f"identity key file {path} must hold a 32-byte secret key in hex") from None


def _open_sealed(path: Path, raw: bytes, passphrase: bytes | None) -> Identity:
    from frostfed.federation.sealing import Sealer, SealError

    if passphrase is None:
        raise IdentityError(f"identity key file {path} is sealed: set member.passphrase_file")
    try:
        _, salt_hex, sealed_hex = raw.decode("ascii").strip().split(":")
        salt, sealed = bytes.fromhex(salt_hex), bytes.fromhex(sealed_hex)
    except ValueError:
        raise IdentityError(f"identity key file {path} is damaged") from None
    try:
        return Identity(Sealer.from_passphrase(passphrase, salt).open(sealed, SEALED_PREFIX.encode()))
    except (SealError, ValueError):
        raise IdentityError(f"identity key file {path} does not open with this passphrase") from None

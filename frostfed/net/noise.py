"""BOLT 8 transport: Noise_XK_secp256k1_ChaChaPoly_SHA256, without I/O.

The handshake runs through noiseprotocol with a secp256k1 Diffie-Hellman from libsecp256k1
(`PrivateKey.ecdh` is SHA256 of the compressed shared point, exactly BOLT 8's ECDH). BOLT 8 adds
what Noise leaves open, and this module adds it too: a version byte in front of each act, exact act
lengths, messages framed as an encrypted 2-byte length followed by the encrypted body, and a key
rotation every 1000 messages in each direction. The TCP driver is in `tcp.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import warnings

from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from noise.backends.default import DefaultNoiseBackend
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import NoiseValueError
from noise.functions.dh import DH
from noise.functions.keypair import KeyPair

PROTOCOL_NAME = b"Noise_XK_secp256k1_ChaChaPoly_SHA256"
BOLT8_PROLOGUE = b"lightning"
HANDSHAKE_VERSION = 0

ACT_ONE_SIZE = 50
ACT_TWO_SIZE = 50
ACT_THREE_SIZE = 66
MAX_MESSAGE = 65535
LENGTH_FRAME_SIZE = 2 + 16
TAG_SIZE = 16
ROTATE_EVERY = 1000


class HandshakeError(Exception):
    """The peer's handshake act is wrong; `reason` is safe to log (it never contains key material)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransportError(Exception):
    """A transport frame failed authentication: the connection must be closed."""


class Secp256k1KeyPair(KeyPair):
    @classmethod
    def from_private_bytes(cls, private_bytes: bytes) -> Secp256k1KeyPair:
        try:
            private = PrivateKey(bytes(private_bytes))
        except ValueError as exc:
            raise NoiseValueError("invalid secp256k1 private key") from exc
        return cls(private=private, public=private.public_key, public_bytes=private.public_key.format())

    @classmethod
    def from_public_bytes(cls, public_bytes: bytes) -> Secp256k1KeyPair:
        public_bytes = bytes(public_bytes)
        if len(public_bytes) != 33:
            raise NoiseValueError("public key must be 33 bytes")
        try:
            public = PublicKey(public_bytes)
        except ValueError as exc:
            raise NoiseValueError("invalid compressed public key") from exc
        return cls(public=public, public_bytes=public_bytes)


class Secp256k1DH(DH):
    @property
    def klass(self) -> type[Secp256k1KeyPair]:
        return Secp256k1KeyPair

    @property
    def dhlen(self) -> int:
        # noiseprotocol slices public keys out of handshake messages by dhlen: the 33-byte encoding.
        return 33

    def generate_keypair(self) -> Secp256k1KeyPair:
        return Secp256k1KeyPair.from_private_bytes(PrivateKey().secret)

    def dh(self, private_key: PrivateKey, public_key: PublicKey) -> bytes:
        return private_key.ecdh(public_key.format())


class Bolt8Backend(DefaultNoiseBackend):
    def __init__(self) -> None:
        super().__init__()
        self.diffie_hellmans: dict[str, type] = {**self.diffie_hellmans, "secp256k1": Secp256k1DH}
        self.keypairs: dict[str, type] = {**self.keypairs, "secp256k1": Secp256k1KeyPair}


_BACKEND = Bolt8Backend()


def hkdf2(salt: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """HKDF-SHA256 with empty info, two 32-byte outputs (BOLT 8's HKDF)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    t1 = hmac.new(prk, b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(prk, t1 + b"\x02", hashlib.sha256).digest()
    return t1, t2


class CipherState:
    """One direction of a BOLT 8 transport: ChaCha20-Poly1305 with a counter nonce and key rotation."""

    def __init__(self, key: bytes, chaining_key: bytes) -> None:
        self._key = key
        self._ck = chaining_key
        self._nonce = 0
        self._aead = ChaCha20Poly1305(key)

    def _next_nonce(self) -> bytes:
        nonce = b"\x00\x00\x00\x00" + struct.pack("<Q", self._nonce)
        self._nonce += 1
        if self._nonce == ROTATE_EVERY:
            self._ck, self._key = hkdf2(self._ck, self._key)
            self._aead = ChaCha20Poly1305(self._key)
            self._nonce = 0
        return nonce

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self._next_nonce(), plaintext, b"")

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(self._next_nonce(), ciphertext, b"")
        except InvalidTag as exc:
            raise TransportError("frame failed authentication") from exc


class Transport:
    """An established link: frames outgoing messages and unframes the incoming byte stream."""

    def __init__(self, remote_static: bytes, send: CipherState, recv: CipherState) -> None:
        self.remote_static = remote_static
        self._send = send
        self._recv = recv
        self._buffer = bytearray()
        self._body_len: int | None = None

    def encrypt_message(self, payload: bytes) -> bytes:
        if len(payload) > MAX_MESSAGE:
            raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
        return self._send.encrypt(struct.pack(">H", len(payload))) + self._send.encrypt(payload)

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the socket; return every message they complete (raises TransportError)."""
        self._buffer += data
        out: list[bytes] = []
        while True:
            if self._body_len is None:
                if len(self._buffer) < LENGTH_FRAME_SIZE:
                    return out
                header = bytes(self._buffer[:LENGTH_FRAME_SIZE])
                del self._buffer[:LENGTH_FRAME_SIZE]
                self._body_len = struct.unpack(">H", self._recv.decrypt(header))[0]
            need = self._body_len + TAG_SIZE
            if len(self._buffer) < need:
                return out
            body = bytes(self._buffer[:need])
            del self._buffer[:need]
            self._body_len = None
            out.append(self._recv.decrypt(body))


class Handshake:
    """The three BOLT 8 acts for one side of one connection."""

    def __init__(
        self,
        local_private: bytes,
        remote_static: bytes | None,
        *,
        prologue: bytes,
        ephemeral_private: bytes | None = None,
    ) -> None:
        self.initiator = remote_static is not None
        self._conn = NoiseConnection.from_name(PROTOCOL_NAME, backend=_BACKEND)
        self._conn.set_prologue(prologue)
        if self.initiator:
            self._conn.set_as_initiator()
            try:
                self._conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_static)
            except NoiseValueError as exc:
                raise HandshakeError("remote static key is not a valid public key") from exc
        else:
            self._conn.set_as_responder()
        self._conn.set_keypair_from_private_bytes(Keypair.STATIC, local_private)
        # noiseprotocol warns about a preset ephemeral key; a fresh one per connection is the point.
        self._conn.set_keypair_from_private_bytes(
            Keypair.EPHEMERAL, ephemeral_private if ephemeral_private is not None else os.urandom(32)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._conn.start_handshake()
        # Kept because noiseprotocol drops them when the handshake completes.
        self._state = self._conn.noise_protocol.handshake_state
        self._symmetric = self._conn.noise_protocol.symmetric_state

    def _transport(self) -> Transport:
        proto = self._conn.noise_protocol
        ck = self._symmetric.ck
        send_key = proto.cipher_state_encrypt.k
        recv_key = proto.cipher_state_decrypt.k
        return Transport(self._state.rs.public_bytes, CipherState(send_key, ck), CipherState(recv_key, ck))

    def _read(self, act: bytes, size: int, name: str) -> None:
        if len(act) != size:
            raise HandshakeError(f"{name}: {len(act)} bytes, expected {size}")
        if act[0] != HANDSHAKE_VERSION:
            raise HandshakeError(f"{name}: unknown version {act[0]}")
        try:
            self._conn.read_message(act[1:])
        except InvalidTag as exc:
            raise HandshakeError(f"{name}: authentication failed (wrong key or corrupted act)") from exc
        except NoiseValueError as exc:
            raise HandshakeError(f"{name}: invalid public key") from exc

    def act_one(self) -> bytes:
        """Initiator: the first message."""
        return bytes((HANDSHAKE_VERSION,)) + bytes(self._conn.write_message())

    def read_act_one(self, act: bytes) -> bytes:
        """Responder: check act one, return act two."""
        self._read(act, ACT_ONE_SIZE, "act one")
        return bytes((HANDSHAKE_VERSION,)) + bytes(self._conn.write_message())

    def read_act_two(self, act: bytes) -> tuple[bytes, Transport]:
        """Initiator: check act two, return act three and the established transport."""
        self._read(act, ACT_TWO_SIZE, "act two")
        act_three = bytes((HANDSHAKE_VERSION,)) + bytes(self._conn.write_message())
        return act_three, self._transport()

    def read_act_three(self, act: bytes) -> Transport:
        """Responder: check act three; the transport's `remote_static` is the authenticated peer."""
        self._read(act, ACT_THREE_SIZE, "act three")
        return self._transport()

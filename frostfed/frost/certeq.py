"""CertEq, ChillDKG's equality check: every participant signs the transcript, all n signatures form
the success certificate.

A participant that holds a valid certificate can later convince any other honest participant that
the session succeeded (the certificate is part of the recovery data), which is what rules out one
participant using a key that others cannot sign for.
"""

from __future__ import annotations

from typing import Any

from .chilldkg_bip340 import schnorr_sign
from .secp import schnorr_verify
from .vss import BIP_TAG

CERTEQ_MSG_PREFIX = (BIP_TAG + "certeq message").encode().ljust(33, b"\x00")
"""BIP 340 domain separation: a 33-byte prefix, zero padded."""


class InvalidSignatureInCertificateError(ValueError):
    def __init__(self, participant_id: int, *args: Any) -> None:
        self.participant_id = participant_id
        super().__init__(participant_id, *args)


def certeq_message(x: bytes, participant_id: int) -> bytes:
    return CERTEQ_MSG_PREFIX + participant_id.to_bytes(4, "big") + x


def certeq_participant_step(hostseckey: bytes, participant_id: int, x: bytes, aux_rand: bytes) -> bytes:
    return schnorr_sign(certeq_message(x, participant_id), hostseckey, aux_rand)


def certeq_cert_len(n: int) -> int:
    return 64 * n


def certeq_verify(hostpubkeys: list[bytes], x: bytes, cert: bytes) -> None:
    """Raises InvalidSignatureInCertificateError naming the first participant whose signature fails.

    Dropping the sign byte of a host key is sound because x commits to all full host keys."""
    n = len(hostpubkeys)
    if len(cert) != certeq_cert_len(n):
        raise ValueError("certificate has the wrong length")
    for i in range(n):
        if not schnorr_verify(certeq_message(x, i), hostpubkeys[i][1:33], cert[i * 64 : (i + 1) * 64]):
            raise InvalidSignatureInCertificateError(i)


def certeq_coordinator_step(sigs: list[bytes]) -> bytes:
    return b"".join(sigs)

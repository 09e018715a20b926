"""The pinned dependency set must import together: coincurve's files are easily overwritten by a
conflicting package (pyln-proto >= 26.6.6 ships a coincurve fork)."""

from coincurve import PrivateKey, PublicKeyXOnly


def test_coincurve_is_intact() -> None:
    sk = PrivateKey(bytes(31) + b"\x01")
    sig = sk.sign_schnorr(bytes(32), bytes(32))
    assert PublicKeyXOnly(sk.public_key.format()[1:]).verify(sig, bytes(32))


def test_libraries_import() -> None:
    import bip32
    import bitcoin.core
    import noise.connection
    import pyln.client

    assert bip32.BIP32 and bitcoin.core.CTransaction and noise.connection.NoiseConnection
    assert pyln.client.Plugin

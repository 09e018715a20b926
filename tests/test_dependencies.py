"""The installed dependency set must work together: coincurve's files are easily overwritten by a
conflicting package (pyln-proto >= 26.6.6 ships the coincurve fork coincurve-cp314-fix)."""

import contextlib
from importlib import metadata

from coincurve import PrivateKey, PublicKeyXOnly


def test_coincurve_is_intact() -> None:
    sk = PrivateKey(bytes(31) + b"\x01")
    sig = sk.sign_schnorr(bytes(32), bytes(32))
    assert PublicKeyXOnly(sk.public_key.format()[1:]).verify(sig, bytes(32))


def test_exactly_one_package_provides_coincurve() -> None:
    """Two distributions writing `coincurve/` would leave whichever installed last, and removing one
    breaks the other: pyproject.toml asks for exactly one per Python version."""
    installed = []
    for name in ("coincurve", "coincurve-cp314-fix"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            installed.append(metadata.distribution(name).metadata["Name"])
    assert len(installed) == 1, installed


def test_libraries_import() -> None:
    import bitcoin.core
    import noise.connection
    import pyln.client

    assert bitcoin.core.CTransaction and noise.connection.NoiseConnection
    assert pyln.client.Plugin

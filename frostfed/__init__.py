"""frostfed: a FROST threshold-signature federation for Bitcoin."""

__version__ = "0.1.0"

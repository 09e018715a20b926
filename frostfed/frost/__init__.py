"""Cryptography: BIP 445 signing, ChillDKG, key derivation and ROAST. Pure functions, no I/O."""

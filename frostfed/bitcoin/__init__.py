"""Bitcoin: Taproot outputs, PSBT, sighash, chain source, payout policy."""

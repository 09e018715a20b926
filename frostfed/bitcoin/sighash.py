"""BIP 341 signature hash for Taproot spends, and the key-path witness that carries the signature.

The message commits to every spent output's amount and script, so a signer must take those from its own
chain view, never from the requester (see `chain_checks.py`). python-bitcoinlib serializes the transaction
parts; it has no BIP 341 digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bitcoin.core import CMutableTransaction, CTransaction, CTxInWitness, CTxOut, CTxWitness
from bitcoin.core.script import CScriptWitness

from frostfed.frost.secp import tagged_hash

SIGHASH_DEFAULT = 0x00
SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80
VALID_HASH_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83})


class SighashError(ValueError):
    """The signature hash is undefined for these arguments (BIP 341 says: fail)."""


def _sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _ser_string(b: bytes) -> bytes:
    n = len(b)
    if n < 0xFD:
        prefix = bytes([n])
    elif n <= 0xFFFF:
        prefix = b"\xfd" + n.to_bytes(2, "little")
    elif n <= 0xFFFFFFFF:
        prefix = b"\xfe" + n.to_bytes(4, "little")
    else:
        prefix = b"\xff" + n.to_bytes(8, "little")
    return prefix + b


@dataclass(frozen=True)
class TxDigests:
    """The per-transaction hashes BIP 341 reuses for every input (sha_prevouts, sha_amounts, ...)."""

    sha_prevouts: bytes
    sha_amounts: bytes
    sha_scriptpubkeys: bytes
    sha_sequences: bytes
    sha_outputs: bytes


def tx_digests(tx: CTransaction, spent_outputs: Sequence[CTxOut]) -> TxDigests:
    if len(spent_outputs) != len(tx.vin):
        raise SighashError(f"{len(tx.vin)} inputs but {len(spent_outputs)} spent outputs given")
    return TxDigests(
        sha_prevouts=_sha256(b"".join(txin.prevout.serialize() for txin in tx.vin)),
        sha_amounts=_sha256(b"".join(o.nValue.to_bytes(8, "little") for o in spent_outputs)),
        sha_scriptpubkeys=_sha256(b"".join(_ser_string(bytes(o.scriptPubKey)) for o in spent_outputs)),
        sha_sequences=_sha256(b"".join(txin.nSequence.to_bytes(4, "little") for txin in tx.vin)),
        sha_outputs=_sha256(b"".join(o.serialize() for o in tx.vout)),
    )


def sighash_message(
    tx: CTransaction,
    input_index: int,
    spent_outputs: Sequence[CTxOut],
    hash_type: int = SIGHASH_DEFAULT,
    annex: bytes | None = None,
    leaf_hash: bytes | None = None,
    digests: TxDigests | None = None,
) -> bytes:
    """SigMsg(hash_type, ext_flag) of BIP 341 (ext_flag 1 with BIP 342's extension when `leaf_hash`)."""
    if hash_type not in VALID_HASH_TYPES:
        raise SighashError(f"hash type 0x{hash_type:02x} is not defined for Taproot")
    if not 0 <= input_index < len(tx.vin):
        raise SighashError(f"input index {input_index} out of range (transaction has {len(tx.vin)})")
    if annex is not None and (not annex or annex[0] != 0x50):
        raise SighashError("an annex starts with 0x50")
    d = digests or tx_digests(tx, spent_outputs)
    base = hash_type & 3
    anyonecanpay = bool(hash_type & SIGHASH_ANYONECANPAY)
    msg = bytes([hash_type])
    msg += tx.nVersion.to_bytes(4, "little", signed=True)
    msg += tx.nLockTime.to_bytes(4, "little")
    if not anyonecanpay:
        msg += d.sha_prevouts + d.sha_amounts + d.sha_scriptpubkeys + d.sha_sequences
    if base not in (SIGHASH_NONE, SIGHASH_SINGLE):
        msg += d.sha_outputs
    ext_flag = 0 if leaf_hash is None else 1
    msg += bytes([ext_flag * 2 + (annex is not None)])
    if anyonecanpay:
        txin = tx.vin[input_index]
        spent = spent_outputs[input_index]
        msg += txin.prevout.serialize()
        msg += spent.nValue.to_bytes(8, "little")
        msg += _ser_string(bytes(spent.scriptPubKey))
        msg += txin.nSequence.to_bytes(4, "little")
    else:
        msg += input_index.to_bytes(4, "little")
    if annex is not None:
        msg += _sha256(_ser_string(annex))
    if base == SIGHASH_SINGLE:
        if input_index >= len(tx.vout):
            raise SighashError("SIGHASH_SINGLE without an output at the input's index")
        msg += _sha256(tx.vout[input_index].serialize())
    if leaf_hash is not None:
        msg += leaf_hash + b"\x00" + b"\xff\xff\xff\xff"
    return msg


def taproot_sighash(
    tx: CTransaction,
    input_index: int,
    spent_outputs: Sequence[CTxOut],
    hash_type: int = SIGHASH_DEFAULT,
    annex: bytes | None = None,
    leaf_hash: bytes | None = None,
) -> bytes:
    """The 32-byte message a BIP 340 signature of this input signs: hash_TapSighash(0x00 || SigMsg)."""
    return tagged_hash(
        "TapSighash", b"\x00" + sighash_message(tx, input_index, spent_outputs, hash_type, annex, leaf_hash)
    )


def keypath_witness_stack(signature: bytes, hash_type: int = SIGHASH_DEFAULT) -> list[bytes]:
    """Key-path witness: the bare 64-byte signature for SIGHASH_DEFAULT, else signature || hash_type."""
    if len(signature) != 64:
        raise SighashError("a BIP 340 signature is 64 bytes")
    if hash_type not in VALID_HASH_TYPES:
        raise SighashError(f"hash type 0x{hash_type:02x} is not defined for Taproot")
    return [signature if hash_type == SIGHASH_DEFAULT else signature + bytes([hash_type])]


def with_keypath_witnesses(tx: CTransaction, stacks: dict[int, list[bytes]]) -> CTransaction:
    """A copy of `tx` whose inputs listed in `stacks` get those witness stacks (others keep theirs)."""
    mtx = CMutableTransaction.from_tx(tx)
    old = list(tx.wit.vtxinwit) if not tx.wit.is_null() else []
    old += [CTxInWitness()] * (len(tx.vin) - len(old))
    for index in stacks:
        if not 0 <= index < len(tx.vin):
            raise SighashError(f"input index {index} out of range")
    wits = [CTxInWitness(CScriptWitness(stacks[i])) if i in stacks else old[i] for i in range(len(tx.vin))]
    mtx.wit = CTxWitness(wits)
    return CTransaction.from_tx(mtx)

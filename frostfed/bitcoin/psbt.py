"""Partially signed transactions (BIP 174, version 0) with the Taproot key-path fields of BIP 371.

python-bitcoinlib has no PSBT. Each map keeps its key-value pairs as read, in order, so a PSBT from
bitcoind serializes back byte for byte, and fields this module does not interpret pass through
untouched; the fields a key-path spend needs have typed accessors.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import ClassVar, Self

from bitcoin.core import CTransaction, CTxInWitness, CTxOut, CTxWitness
from bitcoin.core.script import CScriptWitness
from bitcoin.core.serialize import SerializationError, VarIntSerializer

MAGIC = b"psbt\xff"

# Global types
PSBT_GLOBAL_UNSIGNED_TX = 0x00
PSBT_GLOBAL_XPUB = 0x01
PSBT_GLOBAL_VERSION = 0xFB
# Input types
PSBT_IN_NON_WITNESS_UTXO = 0x00
PSBT_IN_WITNESS_UTXO = 0x01
PSBT_IN_PARTIAL_SIG = 0x02
PSBT_IN_SIGHASH_TYPE = 0x03
PSBT_IN_BIP32_DERIVATION = 0x06
PSBT_IN_FINAL_SCRIPTSIG = 0x07
PSBT_IN_FINAL_SCRIPTWITNESS = 0x08
PSBT_IN_TAP_KEY_SIG = 0x13
PSBT_IN_TAP_SCRIPT_SIG = 0x14
PSBT_IN_TAP_LEAF_SCRIPT = 0x15
PSBT_IN_TAP_BIP32_DERIVATION = 0x16
PSBT_IN_TAP_INTERNAL_KEY = 0x17
PSBT_IN_TAP_MERKLE_ROOT = 0x18
# Output types
PSBT_OUT_BIP32_DERIVATION = 0x02
PSBT_OUT_TAP_INTERNAL_KEY = 0x05
PSBT_OUT_TAP_TREE = 0x06
PSBT_OUT_TAP_BIP32_DERIVATION = 0x07

# Types whose key is the type alone (any key data is malformed).
_NO_KEYDATA = {
    "global": {PSBT_GLOBAL_UNSIGNED_TX, PSBT_GLOBAL_VERSION},
    "input": {
        PSBT_IN_NON_WITNESS_UTXO,
        PSBT_IN_WITNESS_UTXO,
        PSBT_IN_SIGHASH_TYPE,
        PSBT_IN_FINAL_SCRIPTSIG,
        PSBT_IN_FINAL_SCRIPTWITNESS,
        PSBT_IN_TAP_KEY_SIG,
        PSBT_IN_TAP_INTERNAL_KEY,
        PSBT_IN_TAP_MERKLE_ROOT,
    },
    "output": {PSBT_OUT_TAP_INTERNAL_KEY, PSBT_OUT_TAP_TREE},
}
_XONLY_KEYDATA = {"input": {PSBT_IN_TAP_BIP32_DERIVATION}, "output": {PSBT_OUT_TAP_BIP32_DERIVATION}}


class PsbtError(ValueError):
    """Bytes that are not a valid PSBT, or a field with an invalid value."""


# --- encoding primitives ----------------------------------------------------------------------------------


_ser_compact = VarIntSerializer.serialize


def _read_exact(f: io.BytesIO, n: int, what: str) -> bytes:
    if n > f.getbuffer().nbytes - f.tell():
        raise PsbtError(f"PSBT ends inside {what}")
    b = f.read(n)
    if len(b) != n:
        raise PsbtError(f"PSBT ends inside {what}")
    return b


def _read_compact(f: io.BytesIO, what: str) -> int:
    first = _read_exact(f, 1, what)[0]
    if first < 0xFD:
        return first
    size, smallest = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}[first]
    n = int.from_bytes(_read_exact(f, size, what), "little")
    if n < smallest:
        raise PsbtError(f"non-canonical length in {what}")
    return n


def _split_key(key: bytes) -> tuple[int, bytes]:
    f = io.BytesIO(key)
    t = _read_compact(f, "key type")
    return t, f.read()


def _make_key(key_type: int, keydata: bytes = b"") -> bytes:
    return _ser_compact(key_type) + keydata


@dataclass(frozen=True)
class KeyOrigin:
    """Master key fingerprint and derivation path (BIP 174 `KEY_ORIGIN`)."""

    fingerprint: bytes
    path: tuple[int, ...]

    def serialize(self) -> bytes:
        return self.fingerprint + b"".join(i.to_bytes(4, "little") for i in self.path)

    @classmethod
    def parse(cls, b: bytes) -> KeyOrigin:
        if len(b) < 4 or len(b) % 4:
            raise PsbtError("key origin is a 4-byte fingerprint and 4 bytes per path step")
        return cls(b[:4], tuple(int.from_bytes(b[i : i + 4], "little") for i in range(4, len(b), 4)))


@dataclass(frozen=True)
class TapBip32Derivation:
    """Leaf hashes the key signs for (none for the key path) and the key's origin (BIP 371)."""

    leaf_hashes: tuple[bytes, ...]
    origin: KeyOrigin

    def serialize(self) -> bytes:
        return _ser_compact(len(self.leaf_hashes)) + b"".join(self.leaf_hashes) + self.origin.serialize()

    @classmethod
    def parse(cls, b: bytes) -> TapBip32Derivation:
        f = io.BytesIO(b)
        n = _read_compact(f, "tap bip32 derivation")
        hashes = tuple(_read_exact(f, 32, "leaf hash") for _ in range(n))
        return cls(hashes, KeyOrigin.parse(f.read()))


# --- maps -------------------------------------------------------------------------------------------------


class PsbtMap:
    """An ordered key -> value map of one PSBT section; keys are full keys (type || keydata)."""

    kind = "global"

    def __init__(self, pairs: dict[bytes, bytes] | None = None):
        self.pairs: dict[bytes, bytes] = dict(pairs or {})

    def get(self, key_type: int, keydata: bytes = b"") -> bytes | None:
        return self.pairs.get(_make_key(key_type, keydata))

    def set(self, key_type: int, value: bytes, keydata: bytes = b"") -> None:
        self.pairs[_make_key(key_type, keydata)] = value

    def remove(self, key_type: int, keydata: bytes = b"") -> None:
        self.pairs.pop(_make_key(key_type, keydata), None)

    def entries(self, key_type: int) -> list[tuple[bytes, bytes]]:
        """(keydata, value) of every pair of this type."""
        out = []
        for key, value in self.pairs.items():
            t, keydata = _split_key(key)
            if t == key_type:
                out.append((keydata, value))
        return out

    def serialize(self) -> bytes:
        return b"".join(_ser_compact(len(k)) + k + _ser_compact(len(v)) + v for k, v in self.pairs.items()) + b"\x00"

    @classmethod
    def read(cls, f: io.BytesIO, where: str) -> Self:
        pairs: dict[bytes, bytes] = {}
        while True:
            keylen = _read_compact(f, f"{where} key length")
            if keylen == 0:
                break
            key = _read_exact(f, keylen, f"{where} key")
            value = _read_exact(f, _read_compact(f, f"{where} value length"), f"{where} value")
            if key in pairs:
                raise PsbtError(f"{where} has a duplicate key {key.hex()}")
            key_type, keydata = _split_key(key)
            if key_type in _NO_KEYDATA[cls.kind] and keydata:
                raise PsbtError(f"{where} key type 0x{key_type:02x} takes no key data")
            if key_type in _XONLY_KEYDATA.get(cls.kind, ()) and len(keydata) != 32:
                raise PsbtError(f"{where} key type 0x{key_type:02x} needs a 32-byte x-only key")
            pairs[key] = value
        m = cls(pairs)
        m.validate(where)
        return m

    def validate(self, where: str) -> None:
        """Check the values of the fields this module interprets."""


class _TaprootKeyMap(PsbtMap):
    """The Taproot internal key and BIP32 derivation fields (BIP 371), which inputs and outputs both
    carry under different key types."""

    TAP_INTERNAL_KEY: ClassVar[int]
    TAP_BIP32_DERIVATION: ClassVar[int]

    @property
    def tap_internal_key(self) -> bytes | None:
        raw = self.get(self.TAP_INTERNAL_KEY)
        if raw is not None and len(raw) != 32:
            raise PsbtError("a Taproot internal key is 32 bytes")
        return raw

    @tap_internal_key.setter
    def tap_internal_key(self, key: bytes) -> None:
        if len(key) != 32:
            raise PsbtError("a Taproot internal key is 32 bytes")
        self.set(self.TAP_INTERNAL_KEY, key)

    @property
    def tap_bip32_derivations(self) -> dict[bytes, TapBip32Derivation]:
        return {k: TapBip32Derivation.parse(v) for k, v in self.entries(self.TAP_BIP32_DERIVATION)}

    def add_tap_bip32_derivation(self, xonly: bytes, derivation: TapBip32Derivation) -> None:
        if len(xonly) != 32:
            raise PsbtError("a Taproot BIP32 derivation is keyed by a 32-byte x-only key")
        self.set(self.TAP_BIP32_DERIVATION, derivation.serialize(), xonly)


class PsbtInput(_TaprootKeyMap):
    kind = "input"
    TAP_INTERNAL_KEY = PSBT_IN_TAP_INTERNAL_KEY
    TAP_BIP32_DERIVATION = PSBT_IN_TAP_BIP32_DERIVATION

    def validate(self, where: str) -> None:
        try:
            _ = self.witness_utxo
            _ = self.tap_key_sig
            _ = self.tap_internal_key
            _ = self.tap_bip32_derivations
            _ = self.sighash_type
            _ = self.final_scriptwitness
        except PsbtError as e:
            raise PsbtError(f"{where}: {e}") from None

    @property
    def witness_utxo(self) -> CTxOut | None:
        raw = self.get(PSBT_IN_WITNESS_UTXO)
        if raw is None:
            return None
        try:
            return CTxOut.deserialize(raw)
        except (SerializationError, ValueError) as e:
            raise PsbtError(f"witness utxo does not parse: {e}") from None

    @witness_utxo.setter
    def witness_utxo(self, out: CTxOut) -> None:
        self.set(PSBT_IN_WITNESS_UTXO, out.serialize())

    @property
    def sighash_type(self) -> int | None:
        raw = self.get(PSBT_IN_SIGHASH_TYPE)
        if raw is None:
            return None
        if len(raw) != 4:
            raise PsbtError("sighash type is 4 bytes")
        return int.from_bytes(raw, "little")

    @property
    def tap_key_sig(self) -> bytes | None:
        raw = self.get(PSBT_IN_TAP_KEY_SIG)
        if raw is not None and len(raw) not in (64, 65):
            raise PsbtError("a Taproot key signature is 64 or 65 bytes")
        return raw

    @tap_key_sig.setter
    def tap_key_sig(self, sig: bytes) -> None:
        if len(sig) not in (64, 65):
            raise PsbtError("a Taproot key signature is 64 or 65 bytes")
        self.set(PSBT_IN_TAP_KEY_SIG, sig)

    @property
    def final_scriptwitness(self) -> list[bytes] | None:
        raw = self.get(PSBT_IN_FINAL_SCRIPTWITNESS)
        if raw is None:
            return None
        f = io.BytesIO(raw)
        items = [
            _read_exact(f, _read_compact(f, "witness item"), "witness item") for _ in range(_read_compact(f, "witness"))
        ]
        if f.read():
            raise PsbtError("final script witness has trailing bytes")
        return items

    @final_scriptwitness.setter
    def final_scriptwitness(self, stack: list[bytes]) -> None:
        self.set(
            PSBT_IN_FINAL_SCRIPTWITNESS,
            _ser_compact(len(stack)) + b"".join(_ser_compact(len(i)) + i for i in stack),
        )


class PsbtOutput(_TaprootKeyMap):
    kind = "output"
    TAP_INTERNAL_KEY = PSBT_OUT_TAP_INTERNAL_KEY
    TAP_BIP32_DERIVATION = PSBT_OUT_TAP_BIP32_DERIVATION

    def validate(self, where: str) -> None:
        try:
            _ = self.tap_internal_key
            _ = self.tap_bip32_derivations
        except PsbtError as e:
            raise PsbtError(f"{where}: {e}") from None


# --- the whole PSBT ---------------------------------------------------------------------------------------


class Psbt:
    def __init__(self, tx: CTransaction, global_map: PsbtMap, inputs: list[PsbtInput], outputs: list[PsbtOutput]):
        self.tx = tx
        self.global_map = global_map
        self.inputs = inputs
        self.outputs = outputs

    @classmethod
    def from_unsigned_tx(cls, tx: CTransaction) -> Psbt:
        if not tx.wit.is_null() or any(len(i.scriptSig) for i in tx.vin):
            raise PsbtError("a PSBT's transaction carries no signatures")
        g = PsbtMap()
        g.set(PSBT_GLOBAL_UNSIGNED_TX, tx.serialize())
        return cls(tx, g, [PsbtInput() for _ in tx.vin], [PsbtOutput() for _ in tx.vout])

    @classmethod
    def from_bytes(cls, data: bytes) -> Psbt:
        if not data.startswith(MAGIC):
            raise PsbtError("not a PSBT (no 'psbt\\xff' magic)")
        f = io.BytesIO(data[len(MAGIC) :])
        g = PsbtMap.read(f, "global map")
        version = g.get(PSBT_GLOBAL_VERSION)
        if version is not None and (len(version) != 4 or int.from_bytes(version, "little") != 0):
            raise PsbtError("only PSBT version 0 is supported")
        raw_tx = g.get(PSBT_GLOBAL_UNSIGNED_TX)
        if raw_tx is None:
            raise PsbtError("the global map has no unsigned transaction")
        try:
            tx = CTransaction.deserialize(raw_tx)
        except (SerializationError, ValueError) as e:
            raise PsbtError(f"the unsigned transaction does not parse: {e}") from None
        if not tx.wit.is_null() or any(len(i.scriptSig) for i in tx.vin):
            raise PsbtError("the unsigned transaction carries signatures")
        inputs = [PsbtInput.read(f, f"input {i}") for i in range(len(tx.vin))]
        outputs = [PsbtOutput.read(f, f"output {j}") for j in range(len(tx.vout))]
        if f.read():
            raise PsbtError("trailing bytes after the last output map")
        return cls(tx, g, inputs, outputs)

    @classmethod
    def from_base64(cls, text: str) -> Psbt:
        try:
            data = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise PsbtError("PSBT is not valid base64") from None
        return cls.from_bytes(data)

    def serialize(self) -> bytes:
        return (
            MAGIC
            + self.global_map.serialize()
            + b"".join(m.serialize() for m in self.inputs)
            + b"".join(m.serialize() for m in self.outputs)
        )

    def to_base64(self) -> str:
        return base64.b64encode(self.serialize()).decode()

    def spent_outputs(self) -> list[CTxOut]:
        """The witness UTXOs the PSBT claims (a signer checks them against the chain, see payout.py)."""
        outs = []
        for i, m in enumerate(self.inputs):
            utxo = m.witness_utxo
            if utxo is None:
                raise PsbtError(f"input {i} has no witness utxo")
            outs.append(utxo)
        return outs

    def finalize_keypath(self) -> None:
        """BIP 174 finalizer for key-path inputs: the key signature becomes the final witness and the
        signing data is cleared (UTXO fields and unknown fields stay)."""
        keep = {
            PSBT_IN_NON_WITNESS_UTXO,
            PSBT_IN_WITNESS_UTXO,
            PSBT_IN_FINAL_SCRIPTWITNESS,
            PSBT_IN_FINAL_SCRIPTSIG,
        }
        signing = {
            PSBT_IN_PARTIAL_SIG,
            PSBT_IN_SIGHASH_TYPE,
            PSBT_IN_BIP32_DERIVATION,
            PSBT_IN_TAP_KEY_SIG,
            PSBT_IN_TAP_SCRIPT_SIG,
            PSBT_IN_TAP_LEAF_SCRIPT,
            PSBT_IN_TAP_BIP32_DERIVATION,
            PSBT_IN_TAP_INTERNAL_KEY,
            PSBT_IN_TAP_MERKLE_ROOT,
            0x04,  # redeem script
            0x05,  # witness script
        }
        for i, m in enumerate(self.inputs):
            if m.final_scriptwitness is not None:
                continue
            sig = m.tap_key_sig
            if sig is None:
                raise PsbtError(f"input {i} has no Taproot key signature to finalize")
            stack = [sig]
            m.pairs = {k: v for k, v in m.pairs.items() if _split_key(k)[0] not in signing or _split_key(k)[0] in keep}
            m.final_scriptwitness = stack

    def extract(self) -> CTransaction:
        """The network transaction of a finalized PSBT."""
        wits = []
        for i, m in enumerate(self.inputs):
            stack = m.final_scriptwitness
            if stack is None:
                raise PsbtError(f"input {i} is not finalized")
            if m.get(PSBT_IN_FINAL_SCRIPTSIG):
                raise PsbtError(f"input {i} has a scriptSig; only witness spends are supported")
            wits.append(CTxInWitness(CScriptWitness(stack)))
        return CTransaction(self.tx.vin, self.tx.vout, self.tx.nLockTime, self.tx.nVersion, CTxWitness(wits))

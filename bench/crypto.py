"""Milliseconds per BIP 445 operation: frostfed (libsecp256k1) against pure-Python EC baselines.

Run: `python bench/crypto.py` (add `--quick` for fewer repetitions). Not a test: it prints a table.

The baselines are written here and run in the same process, so ratios compare like with like on
this machine. They perform the same BIP 445 steps as frostfed, with the same caching of what depends
only on the signer set, and differ only in how points are added and multiplied:
  - "reference": affine coordinates with a modular inverse per addition, the style of the BIP 340 /
    BIP 327 / BIP 445 Python reference code;
  - "jacobian": Jacobian coordinates (one inverse per multiplication), a stronger pure-Python baseline.
Each baseline partial signature is checked to equal frostfed's, so both compute the same thing.

Operations (per signer unless noted):
  nonce gen       NonceGen with the optional inputs (two generator multiplications);
  sign            Sign incl. its recommended self-verification (session values, warm signer-set cache);
  partial verify  PartialSigVerify, averaged over all u signers of a session (the coordinator's
                  per-signer cost: NonceAgg over the u pubnonces is done once per session and shared);
  aggregate       PartialSigAgg of u partial signatures (per session);
frostfed figures are medians over several sessions, each with a new random signer set.
  signer-set setup (once per signer set) ValidateSignersCtx: threshold key check and Lagrange coefficients.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frostfed.frost import secp, signing
from frostfed.frost.signing import (
    SessionContext,
    SignersContext,
    nonce_agg,
    nonce_gen,
    partial_sig_agg,
    partial_sig_verify,
    sign,
    validate_signers_ctx,
)

P = secp.P_FIELD
N = secp.N
GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8

AffinePoint = tuple[int, int] | None


# --- pure-Python curve arithmetic -------------------------------------------------------------------


class AffineCurve:
    """Affine double-and-add with one inverse per addition (as the BIP reference code does)."""

    name = "reference"

    def add(self, p1: AffinePoint, p2: AffinePoint) -> AffinePoint:
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        x1, y1 = p1
        x2, y2 = p2
        if x1 == x2 and y1 != y2:
            return None
        num, den = (3 * x1 * x1, 2 * y1) if p1 == p2 else (y2 - y1, x2 - x1)
        lam = num * pow(den, P - 2, P) % P
        x3 = (lam * lam - x1 - x2) % P
        return x3, (lam * (x1 - x3) - y1) % P

    def mul(self, p: AffinePoint, k: int) -> AffinePoint:
        k %= N
        r: AffinePoint = None
        for i in range(k.bit_length() - 1, -1, -1):
            r = self.add(r, r)
            if (k >> i) & 1:
                r = self.add(r, p)
        return r


class JacobianCurve(AffineCurve):
    """Jacobian coordinates: additions without inverses, one inverse to return to affine."""

    name = "jacobian"

    @staticmethod
    def _double(x: int, y: int, z: int) -> tuple[int, int, int]:
        if y == 0:
            return 0, 1, 0
        ysq = y * y % P
        s = 4 * x * ysq % P
        m = 3 * x * x % P
        nx = (m * m - 2 * s) % P
        ny = (m * (s - nx) - 8 * ysq * ysq) % P
        return nx, ny, 2 * y * z % P

    @classmethod
    def _add_mixed(cls, x1: int, y1: int, z1: int, x2: int, y2: int) -> tuple[int, int, int]:
        if z1 == 0:
            return x2, y2, 1
        z1z1 = z1 * z1 % P
        u2 = x2 * z1z1 % P
        s2 = y2 * z1 * z1z1 % P
        if u2 == x1:
            return cls._double(x1, y1, z1) if s2 == y1 else (0, 1, 0)
        h = (u2 - x1) % P
        r = (s2 - y1) % P
        hh = h * h % P
        hhh = h * hh % P
        v = x1 * hh % P
        nx = (r * r - hhh - 2 * v) % P
        ny = (r * (v - nx) - y1 * hhh) % P
        return nx, ny, z1 * h % P

    def mul(self, p: AffinePoint, k: int) -> AffinePoint:
        k %= N
        if p is None or k == 0:
            return None
        px, py = p
        x, y, z = 0, 1, 0
        for i in range(k.bit_length() - 1, -1, -1):
            x, y, z = self._double(x, y, z)
            if (k >> i) & 1:
                x, y, z = self._add_mixed(x, y, z, px, py)
        if z == 0:
            return None
        zi = pow(z, P - 2, P)
        return x * zi * zi % P, y * zi * zi * zi % P


def decode(b: bytes) -> AffinePoint:
    if b == bytes(33):
        return None
    x = int.from_bytes(b[1:], "big")
    y = pow((x * x * x + 7) % P, (P + 1) // 4, P)
    if y * y % P != (x * x * x + 7) % P:
        raise ValueError("not a point")
    return x, (y if y % 2 == b[0] % 2 else P - y)


def encode(p: AffinePoint) -> bytes:
    if p is None:
        return bytes(33)
    return bytes([2 + (p[1] & 1)]) + p[0].to_bytes(32, "big")


def th(tag: str, data: bytes) -> int:
    return int.from_bytes(secp.tagged_hash(tag, data), "big") % N


class BaselineFrost:
    """The BIP 445 steps of frostfed's sign / verify / aggregate, on a pure-Python curve."""

    def __init__(self, curve: AffineCurve, ctx: SignersContext) -> None:
        self.c = curve
        self.G: AffinePoint = (GX, GY)
        _, _, ids, pubshares, thresh_pk = ctx
        self.ids = list(ids)
        self.pubshares = {i: bytes(p) for i, p in zip(ids, pubshares, strict=True)}
        self.points = {i: decode(p) for i, p in self.pubshares.items()}
        total = 1
        for i in ids:
            total = total * (i + 1) % N
        self.lam = {}
        for me in ids:
            deno = me + 1
            for i in ids:
                if i != me:
                    deno = deno * (i - me) % N
            self.lam[me] = total * pow(deno, -1, N) % N
        self.Q = decode(thresh_pk)
        self.ser_ids = b"".join(i.to_bytes(4, "big") for i in sorted(ids))

    def nonce_gen(self, secshare: bytes, pubshare: bytes, msg: bytes) -> tuple[bytes, bytes]:
        rand = bytes(
            a ^ b for a, b in zip(secshare, secp.tagged_hash("BIP0445/aux", random.randbytes(32)), strict=True)
        )
        pre = b"\x01" + len(msg).to_bytes(8, "big") + msg
        ks = [th("BIP0445/nonce", rand + b"\x21" + pubshare + b"\x00" + pre + bytes(4) + bytes([i])) for i in (0, 1)]
        return b"".join(k.to_bytes(32, "big") for k in ks), b"".join(encode(self.c.mul(self.G, k)) for k in ks)

    def session_values(self, aggnonce: bytes, msg: bytes) -> tuple[int, AffinePoint, int]:
        assert self.Q is not None
        qx = self.Q[0].to_bytes(32, "big")
        b = th("BIP0445/noncecoef", self.ser_ids + aggnonce + qx + msg)
        R = self.c.add(decode(aggnonce[:33]), self.c.mul(decode(aggnonce[33:]), b)) or self.G
        assert R is not None
        e = th("BIP0340/challenge", R[0].to_bytes(32, "big") + qx + msg)
        return b, R, e

    def nonce_agg(self, pubnonces: list[bytes]) -> bytes:
        out = b""
        for j in (0, 1):
            acc: AffinePoint = None
            for p in pubnonces:
                acc = self.c.add(acc, decode(p[33 * j : 33 * j + 33]))
            out += encode(acc)
        return out

    def sign(self, secnonce: bytes, secshare: bytes, my_id: int, aggnonce: bytes, msg: bytes) -> bytes:
        assert self.Q is not None
        b, R, e = self.session_values(aggnonce, msg)
        k1_, k2_ = int.from_bytes(secnonce[:32], "big"), int.from_bytes(secnonce[32:], "big")
        k1, k2 = (k1_, k2_) if R[1] % 2 == 0 else (N - k1_, N - k2_)
        d_ = int.from_bytes(secshare, "big")
        my_pubshare = encode(self.c.mul(self.G, d_))
        assert my_pubshare == self.pubshares[my_id]
        g = 1 if self.Q[1] % 2 == 0 else N - 1
        s = (k1 + b * k2 + e * self.lam[my_id] * g * d_) % N
        pubnonce = encode(self.c.mul(self.G, k1_)) + encode(self.c.mul(self.G, k2_))
        psig = s.to_bytes(32, "big")
        assert self.verify_internal(psig, my_id, pubnonce, aggnonce, msg)
        return psig

    def verify_internal(self, psig: bytes, my_id: int, pubnonce: bytes, aggnonce: bytes, msg: bytes) -> bool:
        assert self.Q is not None
        b, R, e = self.session_values(aggnonce, msg)
        s = int.from_bytes(psig, "big")
        Re = self.c.add(decode(pubnonce[:33]), self.c.mul(decode(pubnonce[33:]), b))
        if R[1] % 2 and Re is not None:
            Re = (Re[0], P - Re[1])
        g = 1 if self.Q[1] % 2 == 0 else N - 1
        rhs = self.c.add(Re, self.c.mul(self.points[my_id], e * self.lam[my_id] * g))
        return self.c.mul(self.G, s) == rhs

    def agg(self, psigs: list[bytes], aggnonce: bytes, msg: bytes) -> bytes:
        _, R, _ = self.session_values(aggnonce, msg)
        s = sum(int.from_bytes(p, "big") for p in psigs) % N
        return R[0].to_bytes(32, "big") + s.to_bytes(32, "big")


# --- the measurement ----------------------------------------------------------------------------


def deal(t: int, n: int, rng: random.Random) -> tuple[bytes, list[bytes], list[bytes]]:
    coeffs = [rng.randrange(1, N) for _ in range(t)]
    secshares = []
    for i in range(n):
        y = 0
        for c in reversed(coeffs):
            y = (y * (i + 1) + c) % N
        secshares.append(y.to_bytes(32, "big"))
    pubshares = [secp.cbytes(secp.point_mul_g(int.from_bytes(s, "big"))) for s in secshares]  # type: ignore[arg-type]
    return secp.cbytes(secp.point_mul_g(coeffs[0])), secshares, pubshares  # type: ignore[arg-type]


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def measure_frostfed(t: int, n: int, sessions: int, rng: random.Random) -> dict[str, float]:
    thresh_pk, secshares, pubshares = deal(t, n, rng)
    out: dict[str, list[float]] = {"nonce gen": [], "sign": [], "partial verify": [], "aggregate": []}
    ids = list(range(n))
    setup_ms = []
    for _ in range(sessions):
        signer_ids = rng.sample(ids, t)  # a new signer set each session
        ctx = SignersContext(n, t, signer_ids, [pubshares[i] for i in signer_ids], thresh_pk)
        setup_ms.append(timed(lambda ctx=ctx: validate_signers_ctx(ctx)))
        msg = random.randbytes(32)
        nonces = []
        t0 = time.perf_counter()
        for i in signer_ids:
            nonces.append(nonce_gen(secshares[i], pubshares[i], None, msg, None))
        out["nonce gen"].append((time.perf_counter() - t0) * 1000 / t)
        pubnonces = [p for _, p in nonces]
        session = SessionContext(ctx, nonce_agg(pubnonces, signer_ids), [], [], msg)
        t0 = time.perf_counter()
        psigs = [sign(sec, secshares[i], i, session) for (sec, _), i in zip(nonces, signer_ids, strict=True)]
        out["sign"].append((time.perf_counter() - t0) * 1000 / t)
        signing._nonce_agg_cached.cache_clear()  # the first verification pays for NonceAgg ...
        signing._nonce_values.cache_clear()  # ... and for b, R and e
        t0 = time.perf_counter()
        oks = [partial_sig_verify(psigs[k], pubnonces, ctx, [], [], msg, k) for k in range(t)]
        out["partial verify"].append((time.perf_counter() - t0) * 1000 / t)
        assert all(oks)
        t0 = time.perf_counter()
        sig = partial_sig_agg(psigs, signer_ids, session)
        out["aggregate"].append((time.perf_counter() - t0) * 1000)
        assert secp.schnorr_verify(msg, thresh_pk[1:], sig)
    # Median over sessions: other processes on the machine only ever add time.
    res = {k: statistics.median(v) for k, v in out.items()}
    res["signer-set setup (once)"] = statistics.median(setup_ms)
    return res


def measure_baseline(curve: AffineCurve, t: int, n: int, samples: int, rng: random.Random) -> dict[str, float]:
    """Times `samples` signers of one session; each psig is checked against frostfed's."""
    thresh_pk, secshares, pubshares = deal(t, n, rng)
    signer_ids = rng.sample(range(n), t)
    ctx = SignersContext(n, t, signer_ids, [pubshares[i] for i in signer_ids], thresh_pk)
    t0 = time.perf_counter()
    base = BaselineFrost(curve, ctx)
    base.Q = decode(thresh_pk)
    setup = (time.perf_counter() - t0) * 1000
    # The baseline's signer-set setup also interpolates the threshold key (u multiplications).
    t0 = time.perf_counter()
    acc: AffinePoint = None
    for i in signer_ids:
        acc = curve.add(acc, curve.mul(base.points[i], base.lam[i]))
    assert encode(acc) == thresh_pk
    setup += (time.perf_counter() - t0) * 1000
    msg = random.randbytes(32)
    sample = signer_ids[:samples]
    t0 = time.perf_counter()
    for i in sample:
        base.nonce_gen(secshares[i], pubshares[i], msg)
    nonce_ms = (time.perf_counter() - t0) * 1000 / samples
    nonces = [nonce_gen(secshares[i], pubshares[i], None, msg, None) for i in signer_ids]
    pubnonces = [p for _, p in nonces]
    t0 = time.perf_counter()
    aggnonce = base.nonce_agg(pubnonces)
    agg_nonce_ms = (time.perf_counter() - t0) * 1000
    assert aggnonce == nonce_agg(pubnonces, signer_ids)
    session = SessionContext(ctx, aggnonce, [], [], msg)
    sign_ms = verify_ms = 0.0
    psigs = []
    for k, i in enumerate(signer_ids):
        secnonce = nonces[k][0]
        if i in sample:
            # The same (secnonce, session) twice gives the identical psig: nothing new is revealed.
            copy = bytes(secnonce)
            t0 = time.perf_counter()
            bpsig = base.sign(copy, secshares[i], i, aggnonce, msg)
            sign_ms += (time.perf_counter() - t0) * 1000
        psig = sign(secnonce, secshares[i], i, session)
        if i in sample:
            assert bpsig == psig, "baseline and frostfed disagree"
            t0 = time.perf_counter()
            assert base.verify_internal(psig, i, pubnonces[k], aggnonce, msg)
            verify_ms += (time.perf_counter() - t0) * 1000
        psigs.append(psig)
    t0 = time.perf_counter()
    sig = base.agg(psigs, aggnonce, msg)
    agg_ms = (time.perf_counter() - t0) * 1000
    assert sig == partial_sig_agg(psigs, signer_ids, session)
    return {
        "nonce gen": nonce_ms,
        "sign": sign_ms / samples,
        "partial verify": verify_ms / samples + agg_nonce_ms / t,
        "aggregate": agg_ms,
        "signer-set setup (once)": setup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-reference", action="store_true", help="skip the slow affine baseline")
    args = parser.parse_args()
    rng = random.Random(2026)
    setups = [(2, 3), (11, 15), (34, 50), (67, 100)]
    sessions = 2 if args.quick else 5
    samples = 1 if args.quick else 2
    ops = ["nonce gen", "sign", "partial verify", "aggregate", "signer-set setup (once)"]
    curves: list[AffineCurve] = [JacobianCurve()] + ([] if args.no_reference else [AffineCurve()])
    print(f"python {sys.version.split()[0]}; ms per operation; ratio = baseline ms / frostfed ms\n")
    header = f"{'t-of-n':>8} {'operation':<24} {'frostfed':>9}"
    for c in curves:
        header += f" {c.name:>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    summary = {}
    for t, n in setups:
        ff = measure_frostfed(t, n, sessions, rng)
        bases = [measure_baseline(c, t, n, min(samples, t), rng) for c in curves]
        for op in ops:
            line = f"{f'{t}-of-{n}':>8} {op:<24} {ff[op]:>9.3f}"
            for b in bases:
                line += f" {b[op]:>10.2f} {b[op] / ff[op]:>6.0f}x"
            print(line)
            summary[(t, n, op)] = (ff[op], [b[op] / ff[op] for b in bases])
        print()
    sign_ms, sign_ratio = summary[(67, 100, "sign")]
    ver_ms, ver_ratio = summary[(67, 100, "partial verify")]
    print("targets at 67-of-100:")
    print(f"  sign {sign_ms:.3f} ms (<= 4 ms: {'met' if sign_ms <= 4 else 'NOT met'})")
    print(f"  partial verify {ver_ms:.3f} ms (<= 4 ms: {'met' if ver_ms <= 4 else 'NOT met'})")
    for c, rs, rv in zip(curves, sign_ratio, ver_ratio, strict=True):
        verdict = "met" if min(rs, rv) >= 100 else "NOT met"
        print(f"  >= 100x the {c.name} baseline: sign {rs:.0f}x, verify {rv:.0f}x ({verdict})")


if __name__ == "__main__":
    main()

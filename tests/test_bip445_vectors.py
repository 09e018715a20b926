"""Every case of the published BIP 445 test vectors (../shared/vectors/bip445/).

Valid cases must give exactly the expected bytes; an error case passes only when the function raises
the exception the vector names: the same ValueError message, or InvalidContributionError with the
same contribution kind and blamed position (and the blamed participant id).
"""

from __future__ import annotations

from typing import Any

import pytest
from vectorfiles import load_json

from frostfed.frost import secp
from frostfed.frost.signing import (
    InvalidContributionError,
    SessionContext,
    SignersContext,
    deterministic_sign,
    nonce_agg,
    nonce_gen_internal,
    partial_sig_agg,
    partial_sig_verify,
    partial_sig_verify_internal,
    session_xonly_pk,
    sign,
)

FILES = [
    "nonce_gen_vectors.json",
    "nonce_agg_vectors.json",
    "sign_verify_vectors.json",
    "tweak_vectors.json",
    "det_sign_vectors.json",
    "sig_agg_vectors.json",
]


def _data(name: str) -> Any:
    return load_json(f"bip445/{name}")


def _cases(name: str, kinds: tuple[str, ...]) -> list[Any]:
    """(group, case) pairs of one file, with readable ids; loaded lazily at collection."""
    try:
        data = _data(name)
    except pytest.skip.Exception as e:  # not under CI: skip, saying where the vectors come from
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=str(e.msg)))]
    groups = data.get("test_groups", [data])
    out = []
    for g in groups:
        for kind in kinds:
            for case in g.get(kind, []):
                out.append(pytest.param(g, case, id=f"{g.get('tg_id', 'top')}-{kind}-{case['tc_id']}"))
    return out


def _hex(x: str | None) -> bytes | None:
    return None if x is None else bytes.fromhex(x)


def _pick(g: dict, field: str, indices: list[int]) -> list[bytes]:
    return [bytes.fromhex(g[field][i]) for i in indices]


def _signers(g: dict, case: dict) -> SignersContext:
    return SignersContext(
        g["n"],
        g["t"],
        case["ids"],
        _pick(g, "pubshares", case["pubshare_indices"]),
        bytes.fromhex(g["thresh_pk"]),
    )


def _tweaks(g: dict, case: dict) -> tuple[list[bytes], list[bool]]:
    if "tweak_indices" in case:
        return _pick(g, "tweaks", case["tweak_indices"]), case["is_xonly"]
    return [bytes.fromhex(t) for t in case.get("tweaks", [])], case.get("is_xonly", [])


def _expect_error(case: dict, fn: Any, ids: list[Any] | None = None) -> None:
    err = case["error"]
    if err["type"] == "ValueError":
        with pytest.raises(ValueError) as info:
            fn()
        assert not isinstance(info.value, InvalidContributionError)
        assert str(info.value) == err["message"]
    elif err["type"] == "InvalidContributionError":
        with pytest.raises(InvalidContributionError) as info:
            fn()
        assert info.value.contrib == err["contrib"]
        assert info.value.signer_index == err["signer_index"]
        if ids is not None and err["signer_index"] is not None:
            assert info.value.id == ids[err["signer_index"]]
        if err["signer_index"] is None:
            assert info.value.id is None
    else:
        pytest.fail(f"unknown error type {err['type']}")


@pytest.mark.parametrize("name", FILES)
def test_vector_file_is_present(name: str) -> None:
    data = _data(name)
    assert data


@pytest.mark.parametrize(("g", "case"), _cases("nonce_gen_vectors.json", ("valid_tests",)))
def test_nonce_gen(g: dict, case: dict) -> None:
    secnonce, pubnonce = nonce_gen_internal(
        bytes.fromhex(case["rand_"]),
        _hex(case["secshare"]),
        _hex(case["pubshare"]),
        _hex(case["thresh_pk"]),
        _hex(case["msg"]),
        _hex(case["extra_in"]),
    )
    assert isinstance(secnonce, bytearray)
    assert [bytes(secnonce).hex().upper(), pubnonce.hex().upper()] == case["expected"]


@pytest.mark.parametrize(("g", "case"), _cases("nonce_agg_vectors.json", ("valid_tests", "error_tests")))
def test_nonce_agg(g: dict, case: dict) -> None:
    pubnonces = _pick(g, "pubnonces", case["pubnonce_indices"])
    ids = [100 + k for k in range(len(pubnonces))]  # distinct from positions, to check who is blamed
    if "error" in case:
        _expect_error(case, lambda: nonce_agg(pubnonces, ids), ids)
    else:
        assert nonce_agg(pubnonces, ids).hex().upper() == case["expected"]


@pytest.mark.parametrize(("g", "case"), _cases("sign_verify_vectors.json", ("valid_tests",)))
def test_sign_verify_valid(g: dict, case: dict) -> None:
    _check_valid_sign(g, case)


@pytest.mark.parametrize(("g", "case"), _cases("tweak_vectors.json", ("valid_tests",)))
def test_tweak_valid(g: dict, case: dict) -> None:
    _check_valid_sign(g, case)


def _check_valid_sign(g: dict, case: dict) -> None:
    signers = _signers(g, case)
    pubnonces = _pick(g, "pubnonces", case["pubnonce_indices"])
    aggnonce = bytes.fromhex(case["aggnonce"])
    assert nonce_agg(pubnonces, case["ids"]) == aggnonce
    tweaks, is_xonly = _tweaks(g, case)
    msg = bytes.fromhex(case["msg"])
    secnonce = bytearray.fromhex(g["secnonces"][case["secnonce_index"]])
    secshare = bytes.fromhex(g["secshares"][case["secshare_index"]])
    psig = sign(secnonce, secshare, case["my_id"], SessionContext(signers, aggnonce, tweaks, is_xonly, msg))
    assert psig.hex().upper() == case["expected"]
    assert secnonce == bytearray(64)  # erased
    i = case["ids"].index(case["my_id"])
    assert partial_sig_verify(psig, pubnonces, signers, tweaks, is_xonly, msg, i)


@pytest.mark.parametrize(("g", "case"), _cases("sign_verify_vectors.json", ("sign_error_tests",)))
def test_sign_error(g: dict, case: dict) -> None:
    _check_sign_error(g, case)


@pytest.mark.parametrize(("g", "case"), _cases("tweak_vectors.json", ("error_tests",)))
def test_tweak_error(g: dict, case: dict) -> None:
    _check_sign_error(g, case)


def _check_sign_error(g: dict, case: dict) -> None:
    signers = _signers(g, case)
    tweaks, is_xonly = _tweaks(g, case)
    ctx = SessionContext(signers, bytes.fromhex(case["aggnonce"]), tweaks, is_xonly, bytes.fromhex(case["msg"]))
    secnonce = bytearray.fromhex(g["secnonces"][case["secnonce_index"]])
    secshare = bytes.fromhex(g["secshares"][case["secshare_index"]])
    _expect_error(case, lambda: sign(secnonce, secshare, case["my_id"], ctx), case["ids"])


@pytest.mark.parametrize(("g", "case"), _cases("sign_verify_vectors.json", ("verify_fail_tests",)))
def test_verify_fail(g: dict, case: dict) -> None:
    signers = _signers(g, case)
    pubnonces = _pick(g, "pubnonces", case["pubnonce_indices"])
    psig = bytes.fromhex(case["psig"])
    msg = bytes.fromhex(case["msg"])
    assert partial_sig_verify(psig, pubnonces, signers, [], [], msg, case["signer_index"]) is False


@pytest.mark.parametrize(("g", "case"), _cases("sign_verify_vectors.json", ("verify_error_tests",)))
def test_verify_error(g: dict, case: dict) -> None:
    signers = _signers(g, case)
    pubnonces = _pick(g, "pubnonces", case["pubnonce_indices"])
    psig = bytes.fromhex(case["psig"])
    msg = bytes.fromhex(case["msg"])
    _expect_error(
        case,
        lambda: partial_sig_verify(psig, pubnonces, signers, [], [], msg, case["signer_index"]),
        case["ids"],
    )


@pytest.mark.parametrize(("g", "case"), _cases("det_sign_vectors.json", ("valid_tests", "error_tests")))
def test_deterministic_sign(g: dict, case: dict) -> None:
    signers = _signers(g, case)
    tweaks, is_xonly = _tweaks(g, case)
    msg = bytes.fromhex(case["msg"])
    secshare = bytes.fromhex(g["secshares"][case["secshare_index"]])
    aggothernonce = _hex(case["aggothernonce"])

    def run() -> tuple[bytes, bytes]:
        return deterministic_sign(
            secshare, case["my_id"], aggothernonce, signers, tweaks, is_xonly, msg, _hex(case["rand"])
        )

    if "error" in case:
        _expect_error(case, run, case["ids"])
        return
    pubnonce, psig = run()
    assert [pubnonce.hex().upper(), psig.hex().upper()] == case["expected"]
    aggnonce = pubnonce if aggothernonce is None else nonce_agg([pubnonce, aggothernonce], [case["my_id"], None])
    ctx = SessionContext(signers, aggnonce, tweaks, is_xonly, msg)
    i = case["ids"].index(case["my_id"])
    assert partial_sig_verify_internal(psig, case["my_id"], pubnonce, signers.pubshares[i], ctx)


@pytest.mark.parametrize(("g", "case"), _cases("sig_agg_vectors.json", ("valid_tests", "error_tests")))
def test_partial_sig_agg(g: dict, case: dict) -> None:
    signers = _signers(g, case)
    tweaks, is_xonly = _tweaks(g, case)
    msg = bytes.fromhex(case["msg"])
    psigs = [bytes.fromhex(p) for p in case["psigs"]]
    ctx = SessionContext(signers, bytes.fromhex(case["aggnonce"]), tweaks, is_xonly, msg)
    if "error" in case:
        _expect_error(case, lambda: partial_sig_agg(psigs, case["ids"], ctx), case["ids"])
        return
    sig = partial_sig_agg(psigs, case["ids"], ctx)
    assert sig.hex().upper() == case["expected"]
    # An implementation this project did not write (libsecp256k1) accepts the result.
    assert secp.schnorr_verify(msg, session_xonly_pk(signers.thresh_pk, tweaks, is_xonly), sig)

"""The group helpers, including the point at infinity that libsecp256k1 cannot represent."""

from hypothesis import given
from hypothesis import strategies as st

from frostfed.frost import secp

scalars = st.integers(min_value=1, max_value=secp.N - 1)


@given(scalars, scalars)
def test_add_matches_scalar_add(a: int, b: int) -> None:
    assert secp.point_add(secp.point_mul_g(a), secp.point_mul_g(b)) == secp.point_mul_g(a + b)


@given(scalars)
def test_negation_sums_to_infinity(a: int) -> None:
    p = secp.point_mul_g(a)
    assert secp.point_add(p, secp.point_neg(p)) is None
    assert secp.point_sum([p, p, secp.point_neg(p)]) == p
    assert secp.point_neg(p) == secp.point_mul_g(secp.N - a)


def test_infinity_encoding() -> None:
    assert secp.cbytes_ext(None) == bytes(33)
    assert secp.cpoint_ext(bytes(33)) is None
    assert secp.point_mul(secp.G, secp.N) is None


def test_lift_x_rejects_non_points() -> None:
    import pytest

    with pytest.raises(ValueError):
        secp.lift_x(bytes.fromhex("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34"))
    with pytest.raises(ValueError):
        secp.lift_x(secp.P_FIELD.to_bytes(32, "big"))

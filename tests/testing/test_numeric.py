"""calc_diff against hand-computed values."""

import math

import pytest
import torch

from deepgemm.testing import calc_diff


def test_hand_values() -> None:
    x = torch.tensor([1.0, 2.0])
    # Σxy = 7, Σ(x² + y²) = 15
    assert calc_diff(x, torch.tensor([1.0, 3.0])) == pytest.approx(1 / 15, rel=1e-15, abs=0)
    assert calc_diff(x, x) == 0.0
    assert calc_diff(x, -x) == 2.0
    assert calc_diff(x, torch.zeros(2)) == 1.0


def test_both_zero_is_zero() -> None:
    assert calc_diff(torch.zeros(3, 4), torch.zeros(3, 4)) == 0.0


def test_computed_in_float64() -> None:
    # A 2^-20 relative difference gives ~4.5e-13, far below FP32 resolution of a value near 1.
    e = 2.0**-20
    x = torch.ones(1000)
    y = torch.full((1000,), 1 + e)  # exact in FP32
    assert calc_diff(x, y) == pytest.approx(e * e / (2 + 2 * e + e * e), rel=1e-3, abs=0)
    # Mixed dtypes are promoted, not compared in the lower precision.
    assert calc_diff(torch.tensor([0.1], dtype=torch.bfloat16), torch.tensor([0.1], dtype=torch.float64)) > 0


def test_returns_float_and_propagates_nan() -> None:
    assert isinstance(calc_diff(torch.ones(2), torch.ones(2)), float)
    assert math.isnan(calc_diff(torch.tensor([1.0, float("nan")]), torch.ones(2)))


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        calc_diff(torch.ones(2), torch.ones(3))

"""The accuracy metric the tests and benchmarks use."""

import torch


def calc_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    """``1 - 2·Σxy / Σ(x² + y²)`` in float64: 0 for equal tensors, 1 against zeros, 2 for ``y = -x``.

    It is a squared relative error, roughly ``Σ(x - y)² / Σ(x² + y²)``, that does not blow up on
    individual near-zero entries. Both tensors all zero count as equal (0.0). A NaN or inf in
    either tensor gives NaN, so a ``calc_diff(...) < tol`` check fails on it.

    Contract: ``x`` and ``y`` of the same shape, any dtypes, one device (CPU or CUDA).
    """
    if x.shape != y.shape:
        raise ValueError(f"calc_diff needs equal shapes, found {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    denominator = (x * x + y * y).sum().item()
    if denominator == 0:
        return 0.0
    return 1 - 2 * (x * y).sum().item() / denominator

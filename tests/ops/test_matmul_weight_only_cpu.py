"""``deepgemm.matmul`` with weight-only precisions: a pre-packed weight (``PackedWeight``) or a float ``b``
with ``dtype="w8a16"`` / ``"w4a16"``, on the CPU path, against the op called by hand."""

import numpy as np
import pytest
import torch

import deepgemm
from deepgemm.ops.wonly import weight_only_matmul
from deepgemm.quant.wonly import pack_weight
from deepgemm.testing import calc_diff


def _inputs(m: int = 9, n: int = 80, k: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(m, k, generator=gen).to(torch.bfloat16), torch.randn(n, k, generator=gen))


@pytest.mark.parametrize("precision", ["w8a16", "w4a16"])
def test_packed_weight_equals_the_op_by_hand(precision: str) -> None:
    a, w = _inputs()
    packed = pack_weight(w, precision)
    by_hand = weight_only_matmul(a, packed)
    for kwargs in ({}, {"dtype": precision}, {"precision": precision.upper()}):
        assert torch.equal(deepgemm.matmul(a, packed, **kwargs), by_hand)
    # The product of the activations and the dequantised weight, within the weight's quantisation error.
    assert calc_diff(by_hand.double(), a.double() @ w.double().T) < (1e-2 if precision == "w4a16" else 1e-3)


@pytest.mark.parametrize("precision", ["w8a16", "w4a16"])
def test_float_b_is_packed_on_the_fly(precision: str) -> None:
    a, w = _inputs(seed=1)
    result = deepgemm.matmul(a, w.T, dtype=precision)
    assert torch.equal(result, weight_only_matmul(a, pack_weight(w, precision)))


def test_batched_activations_numpy_and_out() -> None:
    a, w = _inputs(m=6, seed=2)
    packed = pack_weight(w, "w4a16")
    batched = a.reshape(2, 3, -1)
    assert torch.equal(deepgemm.matmul(batched, packed), weight_only_matmul(a, packed).reshape(2, 3, -1))
    out = torch.empty(6, 80, dtype=torch.float32)
    assert deepgemm.matmul(a, packed, out=out) is out
    assert torch.equal(out, weight_only_matmul(a, packed, out_dtype=torch.float32))
    result = deepgemm.matmul(a.float().numpy(), packed, device="cpu")
    assert isinstance(result, np.ndarray) and result.dtype == np.float32 and result.shape == (6, 80)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"dtype": "w8a16"}, ValueError, "dtype='w8a16' but b is packed for 'w4a16'"),
    ({"dtype": "bf16"}, ValueError, "dtype must be None or its precision 'w4a16'"),
    ({"out_dtype": torch.int8}, TypeError, "result dtype must be"),
])
def test_bad_arguments_with_a_packed_weight(kwargs: dict, error: type, match: str) -> None:
    a, w = _inputs()
    with pytest.raises(error, match=match):
        deepgemm.matmul(a, pack_weight(w, "w4a16"), **kwargs)


def test_bad_shapes_with_a_packed_weight() -> None:
    a, w = _inputs()
    with pytest.raises(ValueError, match="K = 256"):
        deepgemm.matmul(a[:, :128], pack_weight(w, "w8a16"))
    with pytest.raises(ValueError, match="floating 2-D b"):
        deepgemm.matmul(a, w.T.to(torch.int8), dtype="w4a16")

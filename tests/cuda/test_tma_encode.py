"""Host-side TMA descriptor checks (the encode itself needs the driver: see tests/jit/test_gpu_jit.py)."""

import pytest
import torch

from deepgemm.cuda.tma import TmaDescriptor, check_tma_args

GOOD = dict(ptr=0x7F00_0000_0000, dtype=torch.bfloat16, global_dims=(7168, 4096),
            global_strides_bytes=(14336,), box_dims=(64, 128), swizzle=128, oob_fill_zero=True,
            l2_promotion=256)


def check(**overrides):
    check_tma_args(**{**GOOD, **overrides})


@pytest.mark.parametrize("overrides", [
    {},
    {"dtype": torch.float8_e4m3fn, "box_dims": (128, 128)},
    {"dtype": torch.float32, "box_dims": (32, 64), "swizzle": 128},
    {"swizzle": 64, "box_dims": (32, 8)},
    {"swizzle": 32, "box_dims": (16, 8)},
    {"swizzle": 0, "box_dims": (256, 256)},
    {"global_dims": (7168, 4096, 8), "global_strides_bytes": (14336, 14336 * 4096), "box_dims": (64, 128, 1)},
    {"global_dims": (64,), "global_strides_bytes": (), "box_dims": (64,)},
    {"dtype": torch.int32, "box_dims": (4, 1), "swizzle": 0, "l2_promotion": 0},
    {"oob_fill_zero": False},
])
def test_valid_arguments(overrides):
    check(**overrides)


@pytest.mark.parametrize("overrides, rule", [
    ({"dtype": torch.float64}, "dtype"),
    ({"global_dims": (), "global_strides_bytes": (), "box_dims": ()}, "1 to 5 dimensions"),
    ({"global_dims": (2,) * 6, "global_strides_bytes": (16,) * 5, "box_dims": (8,) * 6}, "1 to 5 dimensions"),
    ({"box_dims": (64,)}, "box_dims.*one per global dimension"),
    ({"global_strides_bytes": ()}, "global_strides_bytes.*expected 1"),
    ({"ptr": 0x7F00_0000_0008}, "16-byte aligned"),
    ({"global_dims": (0, 4096)}, r"global_dims\[0\] = 0"),
    ({"global_dims": (7168, 2**32 + 1)}, r"global_dims\[1\]"),
    ({"global_strides_bytes": (14344,)}, "multiple of 16"),
    ({"global_strides_bytes": (2**40,)}, "below 2\\^40"),
    ({"box_dims": (64, 257)}, r"box_dims\[1\] = 257"),
    ({"box_dims": (0, 128)}, r"box_dims\[0\] = 0"),
    ({"box_dims": (12, 128), "swizzle": 0}, "multiple of 16 bytes"),
    ({"box_dims": (128, 128)}, "must not exceed the 128-byte swizzle span"),
    ({"box_dims": (64, 8), "swizzle": 64}, "64-byte swizzle span"),
    ({"swizzle": 16}, "swizzle 16"),
    ({"dtype": torch.float8_e4m3fn, "box_dims": (128, 1), "oob_fill_zero": False}, "NaN fill"),
    ({"l2_promotion": 512}, "l2_promotion"),
])
def test_each_rule_has_its_own_error(overrides, rule):
    with pytest.raises(ValueError, match=rule):
        check(**overrides)


def test_descriptor_is_128_immutable_bytes():
    descriptor = TmaDescriptor(bytes(range(128)))
    assert isinstance(descriptor, bytes) and len(descriptor) == 128

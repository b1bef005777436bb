"""One `KernelFamily` record per kernel family; `FAMILIES` names them all."""

from .bf16 import BF16
from .fp8_1d1d import FP8_1D1D
from .fp8_1d2d import FP8_1D2D
from .int8 import INT8
from .tf32 import TF32, TF32X3
from .wonly import W4A16, W8A16

FAMILIES = {family.name: family for family in (FP8_1D2D, BF16, FP8_1D1D, INT8, TF32, TF32X3, W8A16, W4A16)}

__all__ = ["BF16", "FAMILIES", "FP8_1D1D", "FP8_1D2D", "INT8", "TF32", "TF32X3", "W4A16", "W8A16"]

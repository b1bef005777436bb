"""One `KernelFamily` record per kernel family; `FAMILIES` names them all."""

from .bf16 import BF16
from .fp8_1d2d import FP8_1D2D
from .tf32 import TF32

FAMILIES = {family.name: family for family in (FP8_1D2D, BF16, TF32)}

__all__ = ["BF16", "FAMILIES", "FP8_1D2D", "TF32"]

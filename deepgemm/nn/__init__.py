"""FP8 training: autograd functions and modules over deepgemm's GEMMs and casts (``Fp8Linear``,
``fp8_linear``, and the MoE experts' grouped twin ``Fp8GroupedLinear``, ``fp8_grouped_linear``)."""

from .grouped import Fp8GroupedLinear, fp8_grouped_linear
from .linear import Fp8Linear, fp8_linear

__all__ = ["Fp8GroupedLinear", "Fp8Linear", "fp8_grouped_linear", "fp8_linear"]

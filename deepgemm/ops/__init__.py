"""Public GEMM ops and device settings: one folder per kernel family (`fp8/`, `bf16/`, `fp8_1d1d/`), what
they share in `common/`, and `matmul` over all of them. Each family lists its public ops once, in its own
`__all__`; this package's `__all__` (and through it the top-level `deepgemm`'s) is made of those lists."""

from . import (
    bf16,
    cast,  # noqa: F401 (registers the fused FP8 casts with deepgemm.quant)
    fp8,
    fp8_1d1d,
    int8,
    tf32,
    wonly,
)
from .bf16 import *  # noqa: F403
from .common.group_indices import get_m_alignment_for_contiguous_layout
from .common.settings import get_num_sms, set_num_sms
from .fp8 import *  # noqa: F403
from .fp8_1d1d import *  # noqa: F403
from .int8 import *  # noqa: F403
from .matmul import matmul
from .tf32 import *  # noqa: F403
from .wonly import *  # noqa: F403

__all__ = ["get_m_alignment_for_contiguous_layout", "get_num_sms", "matmul", "set_num_sms"]
__all__ += bf16.__all__
__all__ += fp8.__all__
__all__ += fp8_1d1d.__all__
__all__ += int8.__all__
__all__ += tf32.__all__
__all__ += wonly.__all__

"""The fused FP8 cast kernels (kernel.py), registered with `deepgemm.quant.cast`: the quantisation
helpers sit below the ops layer and reach the kernels only through this registration."""

import importlib

from ...quant import cast as _cast

_cast.register_fused_kernels(lambda: importlib.import_module(".kernel", __name__))

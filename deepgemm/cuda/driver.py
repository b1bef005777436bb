"""Error checking and lazy initialisation for the CUDA driver API (``cuda.bindings.driver``).

``cuda.bindings`` returns ``(CUresult, *values)`` tuples instead of raising; ``call`` turns a failure into
a ``CudaError`` that names the driver call and the result code, and returns the values.
"""

from __future__ import annotations

import functools

from cuda.bindings import driver

_SUCCESS = driver.CUresult.CUDA_SUCCESS


class CudaError(RuntimeError):
    """A CUDA driver call failed. ``call`` is the function's name, ``code`` its ``CUresult``."""

    def __init__(self, call: str, code: driver.CUresult) -> None:
        status, description = driver.cuGetErrorString(code)
        detail = description.decode() if status == _SUCCESS and description else "unknown error"
        super().__init__(f"{call} failed: {code.name} ({int(code)}): {detail}")
        self.call = call
        self.code = code


def check(result: tuple, call: str):
    """Unpack a ``cuda.bindings.driver`` result tuple: raise ``CudaError`` unless it succeeded; return
    ``None``, the single value, or a tuple of values."""
    code, *values = result
    if code != _SUCCESS:
        raise CudaError(call, code)
    return values[0] if len(values) == 1 else tuple(values) or None


@functools.cache
def initialize() -> None:
    """``cuInit`` once per process (a failure is retried on the next call); a missing driver becomes a clear
    ``RuntimeError``. Threads racing on the first call may each call ``cuInit``, which is idempotent."""
    try:
        result = driver.cuInit(0)
    except RuntimeError as error:  # cuda.pathfinder cannot find libcuda.so.1
        raise RuntimeError(f"the NVIDIA driver (libcuda.so.1) cannot be loaded: {error}") from error
    check(result, "cuInit")


def call(function, *args):
    """``check(function(*args))`` after making sure the driver is initialised."""
    initialize()
    return check(function(*args), function.__name__)

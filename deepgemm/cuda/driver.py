"""Error checking and lazy initialisation for the CUDA driver API (``cuda.bindings.driver``), whose calls
return ``(CUresult, *values)`` instead of raising: ``call`` raises a ``CudaError`` or returns the values."""

from __future__ import annotations

from cuda.bindings import driver

_SUCCESS = driver.CUresult.CUDA_SUCCESS
_initialized = False


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


def initialize() -> None:
    """``cuInit`` once per process; a missing driver becomes a clear ``RuntimeError``."""
    global _initialized
    if not _initialized:
        # No lock: cuInit is thread-safe and idempotent, so threads racing here at worst call it twice.
        try:
            result = driver.cuInit(0)
        except RuntimeError as error:  # cuda.pathfinder cannot find libcuda.so.1
            raise RuntimeError(f"the NVIDIA driver (libcuda.so.1) cannot be loaded: {error}") from error
        check(result, "cuInit")
        _initialized = True


def call(function, *args):
    """``check(function(*args))`` after making sure the driver is initialised."""
    initialize()
    return check(function(*args), function.__name__)

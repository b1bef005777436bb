"""``cuLaunchKernelEx`` called through ctypes on libcuda, with a launch configuration built once.

The launchers' other way to call the driver (``DG_JIT_LAUNCH_API=ctypes``; the default goes through
``cuda.bindings.driver``): the C structs of ``cuda.h`` mirrored with ctypes (their layout is checked
against the header by tests/cuda/test_launch_structs.py), so a launch is one foreign call with the
config's address, the function handle and the parameter array, instead of a call into the bindings'
wrappers. The configuration's stream is the one field written per launch.
"""

from __future__ import annotations

import ctypes
import functools

# CUlaunchAttributeID values (cuda.h).
CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION = 4
CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6


class CUlaunchAttributeValue(ctypes.Union):
    """The members of the 64-byte union this module sets (cuda.h has more)."""

    _fields_ = (("pad", ctypes.c_char * 64), ("cluster_dim", ctypes.c_uint * 3), ("int_value", ctypes.c_int))


class CUlaunchAttribute(ctypes.Structure):
    _fields_ = (("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", CUlaunchAttributeValue))


class CUlaunchConfig(ctypes.Structure):
    _fields_ = (
        ("gridDimX", ctypes.c_uint), ("gridDimY", ctypes.c_uint), ("gridDimZ", ctypes.c_uint),
        ("blockDimX", ctypes.c_uint), ("blockDimY", ctypes.c_uint), ("blockDimZ", ctypes.c_uint),
        ("sharedMemBytes", ctypes.c_uint),
        ("hStream", ctypes.c_void_p),
        ("attrs", ctypes.POINTER(CUlaunchAttribute)),
        ("numAttrs", ctypes.c_uint),
    )


@functools.cache
def launch_kernel_ex():
    """libcuda's ``cuLaunchKernelEx(const CUlaunchConfig*, CUfunction, void**, void**) -> CUresult``."""
    function = ctypes.CDLL("libcuda.so.1").cuLaunchKernelEx
    function.argtypes = (ctypes.POINTER(CUlaunchConfig), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    function.restype = ctypes.c_int
    return function


class LaunchConfig:
    """A ``CUlaunchConfig`` for one grid, block, shared-memory size and cluster shape (and, with
    `programmatic`, programmatic stream serialization), with its attributes kept alive beside it."""

    def __init__(self, grid: tuple[int, int, int], block: tuple[int, int, int], smem: int,
                 cluster: tuple[int, int, int], programmatic: bool = False) -> None:
        attributes = []
        if cluster != (1, 1, 1):
            attribute = CUlaunchAttribute(id=CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION)
            attribute.value.cluster_dim[:] = cluster
            attributes.append(attribute)
        if programmatic:
            attribute = CUlaunchAttribute(id=CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION)
            attribute.value.int_value = 1
            attributes.append(attribute)
        self.attributes = (CUlaunchAttribute * max(len(attributes), 1))(*attributes)
        self.config = CUlaunchConfig(*grid, *block, smem, None, self.attributes if attributes else None,
                                     len(attributes))
        self.pointer = ctypes.pointer(self.config)

"""Load compiled kernels and launch them with ``cuLaunchKernelEx`` on the current torch stream.

Usage::

    kernel = get_kernel("deepgemm::sm90_fp8_gemm_1d2d", "deepgemm/impls/sm90_fp8_gemm_1d2d.cuh",
                        template_args, comment=config.kernel_repr())
    launch = kernel.launcher((ParamType.TMA, ParamType.TMA, ParamType.PTR, ParamType.U32),
                             grid=num_sms, block=384, smem=smem_size, cluster=2, device=a.device)
    launch(tmap_a, tmap_b, sfb.data_ptr(), m)

Kernels and launchers are cached: ask for them on every call, or keep them. A launcher builds the driver's
launch configuration and parameter storage once, so a call only packs its arguments (one
``struct.pack_into``), reads the current stream and calls the driver. Loading a library is not allowed
inside CUDA-graph capture: call ``get_kernel`` and ``launcher`` once before capturing (a warm-up call of
the op does both).
"""

from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from cuda.bindings import driver

from deepgemm.cuda.device import device_index, get_max_smem_per_block_optin, get_primary_context
from deepgemm.cuda.driver import CudaError, call
from deepgemm.jit import knobs
from deepgemm.jit.build import KernelBinary, build_kernel
from deepgemm.jit.codegen import TemplateArg

_SUCCESS = driver.CUresult.CUDA_SUCCESS
_INVALID_CONTEXT = driver.CUresult.CUDA_ERROR_INVALID_CONTEXT
# Dynamic shared memory above this needs CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
_DEFAULT_SMEM_LIMIT = 48 * 1024


class ParamType:
    """A kernel parameter type: ``ParamType.PTR``, ``I32``, ``U32``, ``I64``, ``U64``, ``F32`` or ``TMA``.

    ``cpp`` is the C++ parameter type it must match; ``format`` its ``struct`` code. (A plain class, not an
    Enum: launcher lookups hash tuples of these on the hot path, and identity hashing is native.)
    """

    __slots__ = ("name", "format", "size", "cpp")
    PTR: ClassVar[ParamType]  # pass an int address, e.g. tensor.data_ptr()
    I32: ClassVar[ParamType]
    U32: ClassVar[ParamType]
    I64: ClassVar[ParamType]
    U64: ClassVar[ParamType]
    F32: ClassVar[ParamType]
    TMA: ClassVar[ParamType]  # pass a deepgemm.cuda.TmaDescriptor (128 bytes, copied by value)

    def __init__(self, name: str, format: str, size: int, cpp: str) -> None:
        self.name, self.format, self.size, self.cpp = name, format, size, cpp

    def __repr__(self) -> str:
        return f"ParamType.{self.name}"


ParamType.PTR = ParamType("PTR", "Q", 8, "T*")
ParamType.I32 = ParamType("I32", "i", 4, "int32_t")
ParamType.U32 = ParamType("U32", "I", 4, "uint32_t")
ParamType.I64 = ParamType("I64", "q", 8, "int64_t")
ParamType.U64 = ParamType("U64", "Q", 8, "uint64_t")
ParamType.F32 = ParamType("F32", "f", 4, "float")
ParamType.TMA = ParamType("TMA", "128s", 128, "const __grid_constant__ deepgemm::TmaDescriptor")


class ParamPacker:
    """Storage for one kernel's parameters and the ``void*[]`` that points into it.

    The driver copies each parameter from ``pointers[i]`` (``size`` bytes) at launch, so the storage only
    has to hold valid bytes during the launch call; natural alignment is kept for readability.
    """

    def __init__(self, param_types: Sequence[ParamType]) -> None:
        self.param_types = tuple(param_types)
        offsets, fmt, offset = [], "<", 0
        for param in self.param_types:
            aligned = -(-offset // min(param.size, 8)) * min(param.size, 8)
            fmt += "x" * (aligned - offset) + param.format
            offsets.append(aligned)
            offset = aligned + param.size
        self._struct = struct.Struct(fmt)
        self.buffer = bytearray(max(self._struct.size, 1))
        # A ctypes view shares the bytearray's memory (and pins its size), so the address is stable.
        self._view = (ctypes.c_char * len(self.buffer)).from_buffer(self.buffer)
        base = ctypes.addressof(self._view)
        self._pointers = (ctypes.c_void_p * max(len(offsets), 1))(*(base + o for o in offsets))
        self.address = ctypes.addressof(self._pointers)  # the void** kernelParams

    def pack(self, args: tuple) -> None:
        try:
            self._struct.pack_into(self.buffer, 0, *args)
        except struct.error as error:
            expected = ", ".join(param.name for param in self.param_types)
            raise TypeError(f"kernel arguments {args!r} do not match the parameters ({expected}): "
                            f"{error}") from None


def _triple(value: int | Sequence[int], what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, int) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"{what} {value!r}: expected 1 to 3 positive ints")
    return (*dims, 1, 1)[:3]


if hasattr(torch._C, "_cuda_getCurrentRawStream"):
    _current_stream = torch._C._cuda_getCurrentRawStream  # far cheaper than torch.cuda.current_stream()
else:
    def _current_stream(index: int) -> int:
        return torch.cuda.current_stream(index).cuda_stream


class Launcher:
    """A kernel bound to parameter types, launch shape and device. Call it with the kernel's arguments.

    ``launcher(*args, stream=None)``: ``args`` in parameter order (ints for pointers and integers, floats
    for F32, ``TmaDescriptor`` for TMA); ``stream`` defaults to torch's current stream on the launcher's
    device. The launch is asynchronous and does not allocate; it is safe to call from several threads.
    """

    def __init__(self, function: driver.CUfunction, param_types: Sequence[ParamType],
                 grid: tuple[int, int, int], block: tuple[int, int, int], smem: int,
                 cluster: tuple[int, int, int], device: int) -> None:
        self.device = device
        self._function = function
        self._packer = ParamPacker(param_types)
        self._config = config = driver.CUlaunchConfig()
        config.gridDimX, config.gridDimY, config.gridDimZ = grid
        config.blockDimX, config.blockDimY, config.blockDimZ = block
        config.sharedMemBytes = smem
        self._attributes = []
        if cluster != (1, 1, 1):
            attribute = driver.CUlaunchAttribute()
            attribute.id = driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
            dim = attribute.value.clusterDim
            dim.x, dim.y, dim.z = cluster
            self._attributes.append(attribute)  # kept alive as long as the config that points at it
        config.attrs = self._attributes
        config.numAttrs = len(self._attributes)
        # The storage and the config are shared by every call, so packing and launching must not
        # interleave between threads (the driver call releases the GIL).
        self._lock = threading.Lock()
        # DG_JIT_LAUNCH_API=ctypes: the same launch through ctypes (deepgemm/cuda/launch.py).
        self._ctypes = None
        if knobs.launch_api() == "ctypes":
            from deepgemm.cuda.launch import LaunchConfig, launch_kernel_ex

            self._ctypes = LaunchConfig(grid, block, smem, cluster)
            self._ctypes_launch = launch_kernel_ex()
            self._function_handle = int(function)

    def __call__(self, *args, stream: int | None = None) -> None:
        if stream is None:
            stream = _current_stream(self.device)
        result = self._launch(args, stream)
        if result == _INVALID_CONTEXT and int(call(driver.cuCtxGetCurrent)) == 0:
            # A thread that never touched CUDA through the runtime (autograd's backward thread, a
            # worker thread) has no current context, and the driver launch needs one even on an
            # explicit stream: bind the device's primary context, as the runtime would, and retry.
            call(driver.cuCtxSetCurrent, get_primary_context(self.device))
            result = self._launch(args, stream)
        if result != _SUCCESS:
            raise CudaError("cuLaunchKernelEx", driver.CUresult(result))

    def _launch(self, args: tuple, stream: int) -> int:
        # The driver's result code (a CUresult, an int subclass, from cuda-bindings; a plain int from ctypes).
        with self._lock:
            self._packer.pack(args)
            if self._ctypes is not None:
                self._ctypes.config.hStream = stream
                return self._ctypes_launch(self._ctypes.pointer, self._function_handle, self._packer.address,
                                           None)
            self._config.hStream = stream
            (result,) = driver.cuLaunchKernelEx(self._config, self._function, self._packer.address, 0)
            return result


class Kernel:
    """A loaded kernel (a ``CUlibrary`` holding one ``__global__`` function); see ``launcher``."""

    def __init__(self, binary: KernelBinary) -> None:
        self.binary = binary
        self.name = binary.name
        self.symbol = binary.symbol
        # Loaded from memory: the cubin may not exist on disk (DG_JIT_DISABLE_CACHE).
        self._library = call(driver.cuLibraryLoadData, binary.cubin, None, None, 0, None, None, 0)
        self._kernel = call(driver.cuLibraryGetKernel, self._library, binary.symbol.encode())
        self._functions: dict[int, driver.CUfunction] = {}
        self._smem_opt_in: dict[int, int] = {}
        self._launchers: dict[tuple, Launcher] = {}
        self._lock = threading.Lock()

    def launcher(self, param_types: Sequence[ParamType], *, grid: int | Sequence[int],
                 block: int | Sequence[int], smem: int = 0, cluster: int | Sequence[int] = 1,
                 device: int | str | torch.device | None = None) -> Launcher:
        """The launcher for these parameter types, grid and block dims, dynamic shared memory (bytes),
        cluster dims and device (default: torch's current device). Cached; the first call for a device
        loads the kernel into that device's context and opts into ``smem`` if it exceeds 48 KiB."""
        index = device_index(device)
        key = (tuple(param_types), grid if isinstance(grid, int) else tuple(grid),
               block if isinstance(block, int) else tuple(block), smem,
               cluster if isinstance(cluster, int) else tuple(cluster), index, knobs.launch_api())
        launcher = self._launchers.get(key)
        if launcher is None:
            with self._lock:
                launcher = Launcher(self._function_for(index, smem), key[0], _triple(grid, "grid"),
                                    _triple(block, "block"), smem, _triple(cluster, "cluster"), index)
                self._launchers[key] = launcher
        return launcher

    def _function_for(self, index: int, smem: int) -> driver.CUfunction:
        # Runs under self._lock.
        function = self._functions.get(index)
        if function is None:
            context = get_primary_context(index)
            # A CUfunction belongs to one context, so a launch on another device's stream fails loudly
            # instead of running on the wrong GPU.
            call(driver.cuCtxPushCurrent, context)
            try:
                function = call(driver.cuKernelGetFunction, self._kernel)
            finally:
                call(driver.cuCtxPopCurrent)
            self._functions[index] = function
        if int(call(driver.cuCtxGetCurrent)) == 0:
            # A launch on the legacy default stream uses the thread's current context; bind the
            # device's primary context as the CUDA runtime would on its first call in this thread.
            call(driver.cuCtxSetCurrent, get_primary_context(index))
        if smem > max(self._smem_opt_in.get(index, 0), _DEFAULT_SMEM_LIMIT):
            limit = get_max_smem_per_block_optin(index)
            if smem > limit:
                raise ValueError(f"{self.name}: {smem} bytes of dynamic shared memory exceed the device's "
                                 f"{limit}-byte limit per block")
            call(driver.cuFuncSetAttribute, function,
                 driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
            self._smem_opt_in[index] = smem
        return function


_kernels: dict[tuple, Kernel] = {}  # by the get_kernel arguments: the hot path, no hashing of headers
_kernels_by_key: dict[str, Kernel] = {}  # by cache key: one library per distinct cubin
_kernels_lock = threading.Lock()


def get_kernel(kernel: str, header: str, template_args: Sequence[TemplateArg], comment: str = "",
               include_dirs: Sequence[Path] = ()) -> Kernel:
    """The loaded kernel ``kernel<template_args...>`` from ``header`` (arguments as in ``render_stub``):
    from memory (a dict lookup), else the disk cache, else a compile. Knobs are read when a kernel is first
    requested in a process."""
    memory_key = (kernel, header, tuple(template_args), comment, tuple(include_dirs))
    found = _kernels.get(memory_key)
    if found is not None:
        return found
    with _kernels_lock:
        found = _kernels.get(memory_key)
        if found is None:
            binary = build_kernel(kernel, header, template_args, comment, include_dirs)
            found = _kernels_by_key.get(binary.key)
            if found is None:
                found = _kernels_by_key[binary.key] = Kernel(binary)
                origin = "compiled" if binary.compiled else "from the disk cache"
                knobs.debug_log(f"loaded {binary.symbol} ({origin}; {binary.directory or 'not cached'})")
            _kernels[memory_key] = found
    return found


def clear_memory_cache() -> None:
    """Forget in-process kernels, so the next ``get_kernel`` rereads the knobs and the disk cache.
    Already loaded libraries stay loaded (launchers may still use them)."""
    with _kernels_lock:
        _kernels.clear()
        _kernels_by_key.clear()

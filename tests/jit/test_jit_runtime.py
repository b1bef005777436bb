"""Launch-side pieces that run without a GPU: parameter packing, launch shapes, the in-memory kernel cache."""

import ctypes
import struct

import pytest

import deepgemm.jit.runtime as runtime
from deepgemm.cuda.tma import TmaDescriptor
from deepgemm.jit import KernelBinary, ParamType
from deepgemm.jit.runtime import ParamPacker, _triple

P = ParamType
ALL = (P.PTR, P.I32, P.U32, P.I64, P.U64, P.F32, P.TMA, P.I32)


def read_params(packer: ParamPacker):
    """What the driver would read: each parameter's bytes through the void*[] array."""
    pointers = (ctypes.c_void_p * len(packer.param_types)).from_address(packer.address)
    return [ctypes.string_at(pointer, param.size)
            for pointer, param in zip(pointers, packer.param_types, strict=True)]


def test_every_parameter_type_round_trips():
    packer = ParamPacker(ALL)
    descriptor = TmaDescriptor(bytes(range(128)))
    args = (0x7F00_0000_1000, -5, 2**32 - 1, -(2**40), 2**64 - 1, 1.5, descriptor, 7)
    packer.pack(args)
    raw = read_params(packer)
    assert struct.unpack("<Q", raw[0])[0] == 0x7F00_0000_1000
    assert struct.unpack("<i", raw[1])[0] == -5
    assert struct.unpack("<I", raw[2])[0] == 2**32 - 1
    assert struct.unpack("<q", raw[3])[0] == -(2**40)
    assert struct.unpack("<Q", raw[4])[0] == 2**64 - 1
    assert struct.unpack("<f", raw[5])[0] == 1.5
    assert raw[6] == bytes(range(128))
    assert struct.unpack("<i", raw[7])[0] == 7


def test_storage_is_reused_and_naturally_aligned():
    packer = ParamPacker(ALL)
    pointers = list((ctypes.c_void_p * len(ALL)).from_address(packer.address))
    for pointer, param in zip(pointers, ALL, strict=True):
        assert pointer % min(param.size, 8) == 0
    packer.pack((1, 2, 3, 4, 5, 6.0, TmaDescriptor(bytes(128)), 8))
    assert list((ctypes.c_void_p * len(ALL)).from_address(packer.address)) == pointers


@pytest.mark.parametrize("args", [
    (1,),  # too few
    (1, 2, 3),  # too many
    (1.5, 2),  # float for a pointer
    (1, 2**31),  # out of int32 range
    (-1, 2),  # negative address
])
def test_bad_arguments_name_the_parameter_types(args):
    packer = ParamPacker((P.PTR, P.I32))
    with pytest.raises(TypeError, match=r"parameters \(PTR, I32\)"):
        packer.pack(args)


def test_tma_parameter_needs_a_descriptor():
    with pytest.raises(TypeError, match="TMA"):
        ParamPacker((P.TMA,)).pack((12345,))


def test_no_parameters():
    packer = ParamPacker(())
    packer.pack(())
    assert packer.address != 0


def test_param_types_hash_by_identity():
    assert {P.PTR: 1}.get(P.PTR) == 1 and P.PTR != P.U64 and repr(P.TMA) == "ParamType.TMA"


@pytest.mark.parametrize("value, expected", [(7, (7, 1, 1)), ((2, 3), (2, 3, 1)), ([4, 5, 6], (4, 5, 6))])
def test_launch_shapes(value, expected):
    assert _triple(value, "grid") == expected


@pytest.mark.parametrize("value", [0, (1, 2, 3, 4), (), (2, 0), (1.0,)])
def test_bad_launch_shapes(value):
    with pytest.raises(ValueError, match="grid"):
        _triple(value, "grid")


def test_memory_cache_skips_the_build_and_shares_libraries(monkeypatch, tmp_path):
    builds, loads = [], []

    def fake_build(kernel, header, template_args, comment, include_dirs):
        builds.append(kernel)
        return KernelBinary(kernel, "_Z1kv", b"\x7fELF", "k" * 64, None, True)

    class FakeKernel:
        def __init__(self, binary):
            loads.append(binary)

    monkeypatch.setattr(runtime, "build_kernel", fake_build)
    monkeypatch.setattr(runtime, "Kernel", FakeKernel)
    runtime.clear_memory_cache()
    try:
        first = runtime.get_kernel("ns::k", "k.cuh", (1, True), include_dirs=[tmp_path])
        assert runtime.get_kernel("ns::k", "k.cuh", [1, True], include_dirs=[tmp_path]) is first
        assert len(builds) == 1  # the hot path builds no stub and hashes no header
        # Another spelling of the same kernel (same cache key) shares the loaded library.
        assert runtime.get_kernel("ns::k", "k.cuh", (1, True), include_dirs=[str(tmp_path)]) is first
        assert len(builds) == 2 and len(loads) == 1
    finally:
        runtime.clear_memory_cache()

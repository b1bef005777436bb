"""The ctypes mirrors of cuda.h's launch structs (deepgemm/cuda/launch.py) match the header: sizes, field
offsets and the attribute ids, read from a program compiled against the CUDA toolkit's cuda.h."""

from __future__ import annotations

import ctypes
import subprocess

import pytest

from deepgemm.cuda import launch
from deepgemm.jit.compiler import find_nvcc

PROBE = r"""
#include <cuda.h>
#include <stddef.h>
#include <stdio.h>
int main() {
    printf("%zu %zu %zu %zu %zu %zu %zu\n", sizeof(CUlaunchConfig), offsetof(CUlaunchConfig, blockDimX),
           offsetof(CUlaunchConfig, sharedMemBytes), offsetof(CUlaunchConfig, hStream),
           offsetof(CUlaunchConfig, attrs), offsetof(CUlaunchConfig, numAttrs), sizeof(CUlaunchAttribute));
    printf("%zu %zu %d %d\n", offsetof(CUlaunchAttribute, value), sizeof(CUlaunchAttributeValue),
           (int)CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION,
           (int)CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
    return 0;
}
"""


@pytest.fixture(scope="module")
def header_layout(tmp_path_factory) -> list[int]:
    nvcc = find_nvcc()
    assert nvcc is not None, "the kernel-compile tests need nvcc on this machine, and so does this one"
    directory = tmp_path_factory.mktemp("launch-structs")
    source, binary = directory / "probe.cpp", directory / "probe"
    source.write_text(PROBE)
    include = nvcc.resolve().parent.parent / "include"
    subprocess.run([str(nvcc), "-I", str(include), str(source), "-o", str(binary)], check=True)
    output = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return [int(x) for x in output.split()]


def test_structs_match_cuda_h(header_layout) -> None:
    config, attribute = launch.CUlaunchConfig, launch.CUlaunchAttribute
    assert header_layout == [
        ctypes.sizeof(config), config.blockDimX.offset, config.sharedMemBytes.offset, config.hStream.offset,
        config.attrs.offset, config.numAttrs.offset, ctypes.sizeof(attribute),
        attribute.value.offset, ctypes.sizeof(launch.CUlaunchAttributeValue),
        launch.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION,
        launch.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
    ]


def test_launch_config_fields() -> None:
    plain = launch.LaunchConfig((132, 1, 1), (384, 1, 1), 200000, (1, 1, 1))
    assert (plain.config.gridDimX, plain.config.blockDimX, plain.config.sharedMemBytes) == (132, 384, 200000)
    assert plain.config.numAttrs == 0 and not plain.config.attrs
    clustered = launch.LaunchConfig((132, 1, 1), (256, 1, 1), 0, (2, 1, 1), programmatic=True)
    assert clustered.config.numAttrs == 2
    first, second = clustered.config.attrs[0], clustered.config.attrs[1]
    assert first.id == launch.CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
    assert list(first.value.cluster_dim) == [2, 1, 1]
    assert second.id == launch.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
    assert second.value.int_value == 1
    # The config's address stays put: the launcher passes this pointer on every launch.
    assert ctypes.addressof(clustered.pointer.contents) == ctypes.addressof(clustered.config)

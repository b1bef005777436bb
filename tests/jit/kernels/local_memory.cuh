#pragma once

#include <deepgemm/common/types.cuh>

// Test kernel: a dynamically indexed array lives in local memory (a stack frame), which
// DG_JIT_PTXAS_CHECK must reject.
namespace deepgemm_tests {

using deepgemm::uint32_t;

template <uint32_t kSize>
__global__ void local_memory(const uint32_t* in, uint32_t* out, uint32_t index) {
    uint32_t table[kSize];
    for (uint32_t i = 0; i < kSize; ++i) {
        table[i] = in[i];
    }
    // A store and a load at run-time indices: the array cannot live in registers.
    table[index % kSize] += threadIdx.x;
    out[threadIdx.x] = table[(index + threadIdx.x) % kSize];
}

}  // namespace deepgemm_tests

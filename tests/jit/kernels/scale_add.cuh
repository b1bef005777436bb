#pragma once

#include <deepgemm/common/types.cuh>

// Test kernel: a value every element can be checked against exactly (small integers times a power of 2).
namespace deepgemm_tests {

using deepgemm::uint32_t;

// out[i] = a[i] * scale (+ i), one element per thread.
template <uint32_t kBlockSize, bool kAddIndex>
__global__ void __launch_bounds__(kBlockSize) scale_add(const float* a, float* out, float scale, uint32_t n) {
    const uint32_t i = blockIdx.x * kBlockSize + threadIdx.x;
    if (i < n) {
        out[i] = a[i] * scale + (kAddIndex ? static_cast<float>(i) : 0.0f);
    }
}

}  // namespace deepgemm_tests

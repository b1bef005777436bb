#pragma once

#include <deepgemm/common/types.cuh>

// Test kernel: writes its scalar and by-value descriptor parameters back to global memory, so the host can
// check the launcher's parameter packing (sizes, offsets, the 64-byte-aligned 128-byte descriptor).
namespace deepgemm_tests {

using deepgemm::int32_t;
using deepgemm::int64_t;
using deepgemm::uint32_t;
using deepgemm::uint64_t;

// out[0..4] = a, b, c, d, bits of e; out[5..20] = the descriptor's 16 words; out[21] = kTag.
template <int kTag>
__global__ void param_echo(uint64_t* out, int32_t a, uint32_t b, int64_t c, uint64_t d, float e,
                           const __grid_constant__ deepgemm::TmaDescriptor desc) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        out[0] = static_cast<uint64_t>(static_cast<int64_t>(a));
        out[1] = b;
        out[2] = static_cast<uint64_t>(c);
        out[3] = d;
        out[4] = __float_as_uint(e);
        for (int i = 0; i < 16; ++i) {
            out[5 + i] = desc.opaque[i];
        }
        out[21] = kTag;
    }
}

}  // namespace deepgemm_tests

#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/warpgroup.cuh>

// Test kernel: setmaxnreg exists only on sm_90a (not sm_90), so this compiles only when the JIT really
// targets sm_90a.
namespace deepgemm_tests {

using deepgemm::uint32_t;

template <uint32_t kNumRegisters>
__global__ void __launch_bounds__(128) sm90a_only(uint32_t* out) {
    deepgemm::ptx::warpgroup_reg_alloc<kNumRegisters>();
    out[threadIdx.x] = threadIdx.x;
}

}  // namespace deepgemm_tests

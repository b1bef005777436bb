#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/smem.cuh>

// Test kernel: reports what the launch configuration gave each block (cluster shape, dynamic shared
// memory) and proves the whole dynamic shared memory is usable.
namespace deepgemm_tests {

using deepgemm::uint32_t;

__device__ __forceinline__ uint32_t cluster_num_ctas() {
    uint32_t n;
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
    return n;
}

// out[4 * block + {0, 1, 2, 3}] = cluster rank, CTAs per cluster, dynamic smem bytes,
// sum over the dynamic smem words of (word index + block index).
template <uint32_t kNumThreads>
__global__ void __launch_bounds__(kNumThreads) cluster_probe(uint32_t* out) {
    extern __shared__ uint32_t words[];
    const uint32_t num_words = deepgemm::ptx::dynamic_smem_size() / 4;
    for (uint32_t i = threadIdx.x; i < num_words; i += kNumThreads) {
        words[i] = i + blockIdx.x;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        uint32_t sum = 0;
        for (uint32_t i = 0; i < num_words; ++i) {
            sum += words[i];
        }
        out[4 * blockIdx.x + 0] = deepgemm::ptx::cluster_cta_rank();
        out[4 * blockIdx.x + 1] = cluster_num_ctas();
        out[4 * blockIdx.x + 2] = num_words * 4;
        out[4 * blockIdx.x + 3] = sum;
    }
}

}  // namespace deepgemm_tests

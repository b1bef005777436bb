#pragma once

#include <deepgemm/common/types.cuh>

namespace deepgemm::ptx {

__device__ __forceinline__ uint32_t cluster_cta_rank() {
    uint32_t rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
    return rank;
}

// Full cluster barrier: every thread of every CTA in the cluster arrives and waits. Release/acquire
// make barrier initialisation and remote arrivals visible across the CTAs.
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

}  // namespace deepgemm::ptx

#pragma once

#include <deepgemm/common/types.cuh>

// Memory-model pieces of a split-K reduction through global memory: each CTA of a tile publishes its
// partial sums, counts itself in on the tile's counter, and the last one to arrive reads the others'.
namespace deepgemm::ptx {

// Orders this thread's earlier global writes before its later ones as seen by the whole GPU, and
// makes writes it has observed visible before its later writes (a cumulative fence).
__device__ __forceinline__ void fence_acq_rel_gpu() {
    asm volatile("fence.acq_rel.gpu;" ::: "memory");
}

// Adds 1 to `*counter` and returns the old value; a release of this thread's (and, through the fence
// and barrier before it, its CTA's) partial sums and an acquire of the earlier arrivals' ones.
__device__ __forceinline__ uint32_t atomic_arrive_gpu(uint32_t* counter) {
    uint32_t old;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(old) : "l"(counter) : "memory");
    return old;
}

__device__ __forceinline__ void st_relaxed_gpu_u32(uint32_t* ptr, uint32_t value) {
    asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" :: "l"(ptr), "r"(value) : "memory");
}

// A load that bypasses L1 (another SM wrote the value; L1 is not coherent).
__device__ __forceinline__ float ld_global_cg_f32(const float* ptr) {
    float value;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(value) : "l"(ptr) : "memory");
    return value;
}

__device__ __forceinline__ void st_global_cg_f32(float* ptr, float value) {
    asm volatile("st.global.cg.f32 [%0], %1;" :: "l"(ptr), "f"(value) : "memory");
}

}  // namespace deepgemm::ptx

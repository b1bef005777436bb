#pragma once

#include <deepgemm/common/types.cuh>

namespace deepgemm::ptx {

// 32-bit shared-window address of a generic pointer into shared memory (what every PTX
// instruction with a .shared operand wants).
__device__ __forceinline__ uint32_t smem_addr(const void* ptr) {
    uint32_t addr;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }"
        : "=r"(addr) : "l"(reinterpret_cast<uint64_t>(ptr)));
    return addr;
}

__device__ __forceinline__ uint32_t dynamic_smem_size() {
    uint32_t size;
    asm volatile("mov.u32 %0, %%dynamic_smem_size;" : "=r"(size));
    return size;
}

__device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t value) {
    asm volatile("st.shared.u32 [%0], %1;" :: "r"(addr), "r"(value) : "memory");
}

__device__ __forceinline__ void st_shared_f32x2(uint32_t addr, float x, float y) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};" :: "r"(addr), "f"(x), "f"(y) : "memory");
}

// Synchronises `num_threads` threads (a multiple of 32) on hardware barrier `id`; id 0 is
// __syncthreads, so roles that sync among themselves use ids from 1.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t num_threads) {
    asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(num_threads) : "memory");
}

// `named_barrier_sync` that also returns how many of the `num_threads` threads passed a true
// `predicate` (every participating thread gets the count).
__device__ __forceinline__ uint32_t named_barrier_count(uint32_t id, uint32_t num_threads, bool predicate) {
    uint32_t count;
    asm volatile("{ .reg .pred p; setp.ne.u32 p, %3, 0; bar.red.popc.u32 %0, %1, %2, p; }"
                 : "=r"(count) : "r"(id), "r"(num_threads), "r"(static_cast<uint32_t>(predicate)) : "memory");
    return count;
}

}  // namespace deepgemm::ptx

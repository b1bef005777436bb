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

__device__ __forceinline__ void st_shared_x4(uint32_t addr, const uint32_t (&words)[4]) {
    asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};"
                 :: "r"(addr), "r"(words[0]), "r"(words[1]), "r"(words[2]), "r"(words[3]) : "memory");
}

// Each of the warp's lanes 8 * j + r gives the address of row r of 8x8 16-bit matrix j (16 bytes,
// 16-byte aligned); every lane holds, in register j, its two elements of matrix j: row lane / 4,
// columns 2 * (lane % 4) and the next (the WGMMA accumulator layout of an 8x8 block). One
// instruction writes 4 (x4) or 2 (x2, addresses from lanes 0-15) matrices.
__device__ __forceinline__ void stmatrix_x4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};"
                 :: "r"(addr), "r"(r0), "r"(r1), "r"(r2), "r"(r3) : "memory");
}

__device__ __forceinline__ void stmatrix_x2(uint32_t addr, uint32_t r0, uint32_t r1) {
    asm volatile("stmatrix.sync.aligned.m8n8.x2.shared.b16 [%0], {%1, %2};" :: "r"(addr), "r"(r0), "r"(r1) : "memory");
}

// Synchronises `num_threads` threads (a multiple of 32) on hardware barrier `id`; id 0 is
// __syncthreads, so roles that sync among themselves use ids from 1.
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t num_threads) {
    asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(num_threads) : "memory");
}

}  // namespace deepgemm::ptx

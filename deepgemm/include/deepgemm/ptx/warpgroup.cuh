#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/smem.cuh>

// Warpgroup-wide instructions: WGMMA ordering and register reallocation (sm_90a).
namespace deepgemm::ptx {

// Orders prior register and shared-memory accesses before the next wgmma.mma_async of this warpgroup.
__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}

__device__ __forceinline__ void wgmma_commit_group() {
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}

template <int kNumPending>
__device__ __forceinline__ void wgmma_wait_group() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(kNumPending) : "memory");
}

// Keeps the compiler from moving accumulator reads above the wgmma wait that makes them valid.
template <typename T>
__device__ __forceinline__ void fence_operand(T& reg) {
    asm volatile("" : "+f"(reg) :: "memory");
}

template <uint32_t kNumRegs>
__device__ __forceinline__ void warpgroup_reg_alloc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(kNumRegs));
}

template <uint32_t kNumRegs>
__device__ __forceinline__ void warpgroup_reg_dealloc() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(kNumRegs));
}

// Shared-memory matrix descriptor for a K-major operand tile stored as 128-byte rows with the
// 128B swizzle (what a TMA load with SWIZZLE_128B and a 128-byte inner box writes). Eight rows form
// one 1024-byte swizzle atom, hence the 1024-byte stride between 8-row groups; the leading offset
// is unused for swizzled K-major layouts. The tile must start 1024-byte aligned; moving along K
// inside the atom is done by advancing the start address.
__device__ __forceinline__ uint64_t make_smem_desc_k_major_sw128(const void* smem_ptr) {
    constexpr uint64_t kStrideBytes = 1024;
    constexpr uint64_t kLayoutSwizzle128B = 1;
    const uint64_t addr = smem_addr(smem_ptr);
    return ((addr & 0x3FFFF) >> 4) | ((uint64_t{1}) << 16) | ((kStrideBytes >> 4) << 32) |
           (kLayoutSwizzle128B << 62);
}

}  // namespace deepgemm::ptx

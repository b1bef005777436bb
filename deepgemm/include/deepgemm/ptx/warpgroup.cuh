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

// The same for an integer (s32) accumulator register.
__device__ __forceinline__ void fence_operand(int32_t& reg) {
    asm volatile("" : "+r"(reg) :: "memory");
}

// The PTX matrix-descriptor encoding: 14-bit fields of byte values in 16-byte units, swizzle mode 1
// (128B) in the top bits.
__device__ __forceinline__ uint64_t make_smem_desc_sw128(const void* smem_ptr, uint32_t leading_bytes,
                                                         uint32_t stride_bytes) {
    constexpr uint64_t kLayoutSwizzle128B = 1;
    const uint64_t addr = smem_addr(smem_ptr);
    return ((addr & 0x3FFFF) >> 4) | (uint64_t{(leading_bytes & 0x3FFFF) >> 4} << 16) |
           (uint64_t{(stride_bytes & 0x3FFFF) >> 4} << 32) | (kLayoutSwizzle128B << 62);
}

template <uint32_t kNumRegs>
__device__ __forceinline__ void warpgroup_reg_alloc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(kNumRegs));
}

template <uint32_t kNumRegs>
__device__ __forceinline__ void warpgroup_reg_dealloc() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(kNumRegs));
}

// Shared-memory matrix descriptors for operand tiles that TMA wrote with the 128B swizzle (128-byte
// inner boxes); tiles start 1024-byte aligned, and steps along K advance the start address.
//
// K-major: 128-byte rows of K. Eight rows form one 1024-byte swizzle atom, hence the 1024-byte
// stride between 8-row groups; the leading offset is unused for swizzled K-major layouts.
__device__ __forceinline__ uint64_t make_smem_desc_k_major_sw128(const void* smem_ptr) {
    return make_smem_desc_sw128(smem_ptr, 16, 1024);
}

// MN-major (16-bit operands only): the tile is a sequence of chunks, each 64 MN-elements wide (one
// 128-byte line) and K lines deep. The leading offset steps from chunk to chunk along MN, the stride
// offset from one 8-line group of K to the next.
__device__ __forceinline__ uint64_t make_smem_desc_mn_major_sw128(const void* smem_ptr, uint32_t chunk_bytes) {
    return make_smem_desc_sw128(smem_ptr, chunk_bytes, 1024);
}

}  // namespace deepgemm::ptx

#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/smem.cuh>

namespace deepgemm::ptx {

// Starts bringing the 128-byte line holding `ptr` into this SM's L1 without waiting for it: a later
// load of it then costs an L1 hit instead of a trip to memory.
__device__ __forceinline__ void prefetch_l1(const void* ptr) {
    asm volatile("prefetch.global.L1 [%0];" :: "l"(ptr));
}

// The same into L2 only (no register, no wait): a later load of the line misses L1 but hits L2.
__device__ __forceinline__ void prefetch_l2(const void* ptr) {
    asm volatile("prefetch.global.L2 [%0];" :: "l"(ptr));
}

// Starts copying 4 bytes from global to shared memory without waiting for them (LDGSTS).
__device__ __forceinline__ void cp_async_4(void* smem_dst, const void* src) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" :: "r"(smem_addr(smem_dst)), "l"(src) : "memory");
}

// Makes the barrier's current phase also wait for every cp.async this thread issued so far: its
// pending count goes up by one now and back down once they landed. The barrier must not be able to
// complete its phase in between (its transaction count still pending, say).
__device__ __forceinline__ void cp_async_arrive_on(uint64_t* bar) {
    asm volatile("cp.async.mbarrier.arrive.shared::cta.b64 [%0];" :: "r"(smem_addr(bar)) : "memory");
}

}  // namespace deepgemm::ptx

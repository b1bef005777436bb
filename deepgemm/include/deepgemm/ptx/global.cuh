#pragma once

#include <deepgemm/common/types.cuh>

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

}  // namespace deepgemm::ptx

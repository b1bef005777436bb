#pragma once

#include <deepgemm/common/types.cuh>

namespace deepgemm::ptx {

// Starts bringing the 128-byte line holding `ptr` into this SM's L1 without waiting for it: a later
// load of it then costs an L1 hit instead of a trip to memory.
__device__ __forceinline__ void prefetch_l1(const void* ptr) {
    asm volatile("prefetch.global.L1 [%0];" :: "l"(ptr));
}

}  // namespace deepgemm::ptx

#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/tma.cuh>

// Test kernel: one CTA TMA-loads one box into shared memory, copies the raw shared-memory image to global
// memory (so the host can check the swizzle byte by byte), and for rank 2 TMA-stores the box back at the
// same coordinates through a second descriptor.
namespace deepgemm_tests {

using deepgemm::int32_t;
using deepgemm::uint32_t;
using deepgemm::uint64_t;
using deepgemm::uint8_t;

template <uint32_t kRank, uint32_t kBoxBytes>
__global__ void __launch_bounds__(128) tma_copy(const __grid_constant__ deepgemm::TmaDescriptor tmap_in,
                                                const __grid_constant__ deepgemm::TmaDescriptor tmap_out,
                                                uint8_t* smem_image, int32_t c0, int32_t c1, int32_t c2) {
    static_assert(kRank == 2 || kRank == 3, "the test covers 2-D and 3-D boxes");
    // Swizzling is a function of the shared-memory address (the 128-byte pattern repeats every
    // 1024 bytes), so the box must start 1024-byte aligned for the host model to apply. No static
    // shared memory: the barrier follows the box in the dynamic allocation (kBoxBytes + 8 bytes).
    extern __shared__ __attribute__((aligned(1024))) uint8_t box[];
    uint64_t* barrier = reinterpret_cast<uint64_t*>(box + kBoxBytes);
    static_assert(kBoxBytes % 8 == 0, "the barrier after the box must be 8-byte aligned");

    if (threadIdx.x == 0) {
        deepgemm::ptx::prefetch_tma_descriptor(&tmap_in);
        deepgemm::ptx::mbarrier_init(barrier, 1);
        deepgemm::ptx::fence_barrier_init();
    }
    __syncthreads();

    if (threadIdx.x == 0) {
        deepgemm::ptx::mbarrier_arrive_expect_tx(barrier, kBoxBytes);
        if constexpr (kRank == 2) {
            deepgemm::ptx::tma_load_2d(&tmap_in, barrier, box, c0, c1);
        } else {
            deepgemm::ptx::tma_load_3d(&tmap_in, barrier, box, c0, c1, c2);
        }
    }
    deepgemm::ptx::mbarrier_wait(barrier, 0);

    for (uint32_t i = threadIdx.x; i < kBoxBytes; i += blockDim.x) {
        smem_image[i] = box[i];
    }
    if constexpr (kRank == 2) {
        if (threadIdx.x == 0) {
            deepgemm::ptx::tma_store_2d(&tmap_out, box, c0, c1);
            deepgemm::ptx::tma_store_commit();
            deepgemm::ptx::tma_store_wait<0>();
        }
    }
}

}  // namespace deepgemm_tests

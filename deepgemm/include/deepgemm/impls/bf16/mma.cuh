#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_16bit.cuh>

namespace deepgemm {

// One consumer warpgroup's 16-bit WGMMAs of a k-block (UnpromotedConsumer::k_loop runs the k-blocks):
// accumulating into `accum` across k-blocks, the first k-block's first WGMMA overwriting it.
template <typename Layout, bool kIsFP16>
struct Bf16Wgmma {
    using MMA = ptx::Wgmma16<Layout::BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // One 16-deep K step moves 32 bytes along a K-major line, or 16 lines (2048 bytes) down an
    // MN-major chunk; descriptors count 16 bytes.
    static constexpr uint32_t kStepA = Layout::kIsAMNMajor ? 2048 / 16 : 2;
    static constexpr uint32_t kStepB = Layout::kIsBMNMajor ? 2048 / 16 : 2;

    float (&accum)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void issue(uint32_t w, uint64_t wave_desc_a, uint64_t desc_b, uint32_t k_block) {
        #pragma unroll
        for (uint32_t k = 0; k < Layout::BLOCK_K / 16; ++k)
            MMA::template mma<kIsFP16, Layout::kIsAMNMajor, Layout::kIsBMNMajor>(
                wave_desc_a + k * kStepA, desc_b + k * kStepB, accum[w], k_block > 0 || k > 0);
    }
    __device__ __forceinline__ void wait_issued(uint32_t) { ptx::wgmma_wait_group<1>(); }
    __device__ __forceinline__ float (&result())[kNumWaves][kNumAccum] { return accum; }
};

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_int8.cuh>

namespace deepgemm {

// One consumer warpgroup's INT8 WGMMAs of a k-block (128 int8 of K, one 128-byte line: 4 WGMMAs of
// K = 32 per wave; UnpromotedConsumer::k_loop runs the k-blocks) into the s32 accumulators `accum`,
// which the tensor cores keep across k-blocks: integer sums are exact, so unlike FP8 there is no
// promotion step.
template <typename Layout>
struct Int8Wgmma {
    using MMA = ptx::WgmmaInt8<Layout::BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // One 32-deep K step moves 32 bytes along a K-major line; descriptors count 16 bytes.
    static constexpr uint32_t kStep = 32 / 16;
    static_assert(Layout::BLOCK_K % 32 == 0, "a k-block is whole WGMMAs of K = 32");

    int32_t (&accum)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void issue(uint32_t w, uint64_t wave_desc_a, uint64_t desc_b, uint32_t k_block) {
        #pragma unroll
        for (uint32_t k = 0; k < Layout::BLOCK_K / 32; ++k)
            MMA::mma(wave_desc_a + k * kStep, desc_b + k * kStep, accum[w], k_block > 0 || k > 0);
    }
    __device__ __forceinline__ void wait_issued(uint32_t) { ptx::wgmma_wait_group<1>(); }
    __device__ __forceinline__ int32_t (&result())[kNumWaves][kNumAccum] { return accum; }
};

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_tf32.cuh>

namespace deepgemm {

// One consumer warpgroup's TF32 WGMMAs of a k-block (m64nNk8, both operands K-major;
// UnpromotedConsumer::k_loop runs the k-blocks) into `accum`, accumulating across k-blocks (and
// across the terms of a 3xTF32 product, which are just more k-blocks).
//
// kPromoteEvery > 0 (3xTF32): the tensor cores' accumulation drops low bits at each step, which over
// a long K costs the digits 3xTF32 exists to keep. So `accum` holds a chunk of kPromoteEvery k-blocks
// only, and each finished chunk is added to `total` with FP32 adds that round to nearest. The chunk's
// WGMMAs must complete before the add, so a chunk's last k-block is waited for at once; the other
// consumer warpgroup's WGMMAs keep the tensor cores busy meanwhile. The result is in `total`.
template <typename Layout, uint32_t kPromoteEvery>
struct Tf32Wgmma {
    using MMA = ptx::WgmmaTF32<Layout::BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // One 8-deep K step moves 32 bytes along a 128-byte K line; descriptors count 16 bytes.
    static constexpr uint32_t kStep = 8 * 4 / 16;

    float (&accum)[kNumWaves][kNumAccum];
    float (&total)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void issue(uint32_t w, uint64_t wave_desc_a, uint64_t desc_b, uint32_t k_block) {
        // The first k-block of the tile (of a chunk, when promoting) overwrites the accumulator.
        const bool accumulate = kPromoteEvery > 0 ? k_block % kPromoteEvery != 0 : k_block > 0;
        #pragma unroll
        for (uint32_t k = 0; k < Layout::BLOCK_K / 8; ++k)
            MMA::mma(wave_desc_a + k * kStep, desc_b + k * kStep, accum[w], accumulate || k > 0);
    }

    __device__ __forceinline__ void wait_issued(uint32_t k_block) {
        if constexpr (kPromoteEvery > 0) {
            if ((k_block + 1) % kPromoteEvery == 0 || k_block + 1 == Layout::kNumKBlocks) {
                ptx::wgmma_wait_group<0>();
                promote(k_block < kPromoteEvery);
            } else {
                ptx::wgmma_wait_group<1>();
            }
        } else {
            ptx::wgmma_wait_group<1>();
        }
    }

    // total (+)= accum, once the chunk's WGMMAs have completed.
    __device__ __forceinline__ void promote(bool first_chunk) {
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w) {
            #pragma unroll
            for (uint32_t i = 0; i < kNumAccum; ++i) {
                ptx::fence_operand(accum[w][i]);
                total[w][i] = first_chunk ? accum[w][i] : total[w][i] + accum[w][i];
            }
        }
    }

    // The promoted sum (3xTF32), else the accumulators themselves.
    __device__ __forceinline__ float (&result())[kNumWaves][kNumAccum] { return kPromoteEvery > 0 ? total : accum; }
};

}  // namespace deepgemm

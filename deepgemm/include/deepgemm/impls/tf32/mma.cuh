#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_tf32.cuh>

namespace deepgemm {

// One consumer warpgroup's mainloop over a tile: per k-block it waits for the stage and issues the
// block's TF32 WGMMAs (m64nNk8, both operands K-major) into `accum`, accumulating across k-blocks
// (and across the terms of a 3xTF32 product, which are just more k-blocks). As in the 16-bit
// kernel, each k-block's WGMMAs are issued while the previous k-block's still run, and a stage is
// freed once the WGMMAs after it were issued. `stage` and `phase`, the ring position, advance here.
//
// kPromoteEvery > 0 (3xTF32): the tensor cores' accumulation drops low bits at each step, which over
// a long K costs the digits 3xTF32 exists to keep. So `accum` holds a chunk of kPromoteEvery k-blocks
// only, and each finished chunk is added to `total` with FP32 adds that round to nearest. The chunk's
// WGMMAs must complete before the add, so a chunk's last k-block is waited for at once; the other
// consumer warpgroup's WGMMAs keep the tensor cores busy meanwhile. The result is in `total`.
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTMAMulticast, uint32_t kPromoteEvery>
struct Tf32Mma {
    using MMA = ptx::WgmmaTF32<BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // One 8-deep K step moves 32 bytes along a 128-byte K line; descriptors count 16 bytes.
    static constexpr uint32_t kStep = 8 * 4 / 16;

    uint64_t* const& full_barriers;
    uint64_t* const& empty_barriers;
    uint32_t& stage;
    uint32_t& phase;
    // This warpgroup's WGMMA descriptors in stage 0; in stage s, those plus s times the stage's size.
    const uint64_t& desc_a_base;
    const uint64_t& desc_b_base;
    const uint32_t& lane;
    float (&accum)[kNumWaves][kNumAccum];
    float (&total)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void k_loop() {
        // The stage whose WGMMAs may still run; freed once the next k-block's are issued.
        uint32_t in_flight_stage = 0;
        for (uint32_t k_block = 0; k_block < Layout::kNumKBlocks; ++k_block) {
            ptx::mbarrier_wait(&full_barriers[stage], phase);
            const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
            const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
            // The first k-block of the tile (of a chunk, when promoting) overwrites the accumulator.
            const bool accumulate = kPromoteEvery > 0 ? k_block % kPromoteEvery != 0 : k_block > 0;
            #pragma unroll
            for (uint32_t w = 0; w < kNumWaves; ++w) {
                ptx::wgmma_fence();
                const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * 128 >> 4);
                #pragma unroll
                for (uint32_t k = 0; k < Layout::BLOCK_K / 8; ++k)
                    MMA::mma(wave_desc_a + k * kStep, desc_b + k * kStep, accum[w], accumulate || k > 0);
            }
            ptx::wgmma_commit_group();
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
            if (k_block > 0)
                release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
            in_flight_stage = stage;
            if (++stage == kNumStages)
                stage = 0, phase ^= 1;
        }
        ptx::wgmma_wait_group<0>();
        release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
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
};

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_int8.cuh>

namespace deepgemm {

// One consumer warpgroup's mainloop over a tile: per k-block (128 int8 of K, one 128-byte line) it
// waits for the stage and issues 4 WGMMAs of K = 32 per wave into the s32 accumulators `accum`, which
// the tensor cores keep across k-blocks: integer sums are exact, so unlike FP8 there is no promotion
// step. As in the 16-bit kernel, each k-block's WGMMAs are issued while the previous k-block's still
// run, and a stage is freed once the WGMMAs after it were issued. With `is_guarded`, waves without
// valid rows (rows outside every group) cost no tensor-core work; compiled twice for kinds with
// invalid rows, so that tiles whose every wave has valid rows run the loop free of the per-wave test.
// It refers to the kernel's own variables; `stage` and `phase`, its ring position, are advanced here.
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTMAMulticast>
struct Int8Mma {
    using MMA = ptx::WgmmaInt8<BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // One 32-deep K step moves 32 bytes along a K-major line; descriptors count 16 bytes.
    static constexpr uint32_t kStep = 32 / 16;
    static_assert(Layout::BLOCK_K % 32 == 0, "a k-block is whole WGMMAs of K = 32");

    uint64_t* const& full_barriers;
    uint64_t* const& empty_barriers;
    uint32_t& stage;
    uint32_t& phase;
    // This warpgroup's WGMMA descriptors in stage 0; in stage s, those plus s times the stage's size.
    const uint64_t& desc_a_base;
    const uint64_t& desc_b_base;
    const uint32_t& lane;
    int32_t (&accum)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void k_loop(bool is_guarded, const uint32_t (&num_valid_rows)[kNumWaves]) {
        // The stage whose WGMMAs may still run; freed once the next k-block's are issued.
        uint32_t in_flight_stage = 0;
        for (uint32_t k_block = 0; k_block < Layout::kNumKBlocks; ++k_block) {
            ptx::mbarrier_wait(&full_barriers[stage], phase);
            const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
            const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
            #pragma unroll
            for (uint32_t w = 0; w < kNumWaves; ++w) {
                if (is_guarded && num_valid_rows[w] == 0)
                    continue;
                ptx::wgmma_fence();
                // A wave's 64-row slice starts 64 K-major lines of 128 bytes further on.
                const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * Layout::BLOCK_K >> 4);
                #pragma unroll
                for (uint32_t k = 0; k < Layout::BLOCK_K / 32; ++k)
                    MMA::mma(wave_desc_a + k * kStep, desc_b + k * kStep, accum[w], k_block > 0 || k > 0);
            }
            ptx::wgmma_commit_group();
            ptx::wgmma_wait_group<1>();
            if (k_block > 0)
                release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
            in_flight_stage = stage;
            if (++stage == kNumStages)
                stage = 0, phase ^= 1;
        }
        ptx::wgmma_wait_group<0>();
        release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
    }
};

}  // namespace deepgemm

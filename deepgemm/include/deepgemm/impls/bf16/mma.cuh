#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_16bit.cuh>

namespace deepgemm {

// One consumer warpgroup's mainloop over a tile: per k-block it waits for the stage and issues the
// block's WGMMAs into `accum`, accumulating across k-blocks. Each k-block's WGMMAs are issued while
// the previous k-block's still run; a stage is freed once the WGMMAs after it were issued. With
// `is_guarded`, waves without valid rows (rows outside every group: padding, past masked_m) cost no
// tensor-core work; compiled twice for kinds with invalid rows, as in the FP8 kernel, so that tiles
// whose every wave has valid rows run the loop free of the per-wave test. As Fp8MmaPromote, it refers
// to the kernel's own variables; `stage` and `phase`, its ring position, are advanced here.
// It runs kNumKBlocks k-blocks: the whole K loop, or one split-K slice.
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTMAMulticast, bool kIsFP16,
          bool kIsAMNMajor, bool kIsBMNMajor, uint32_t kNumKBlocks = Layout::kNumKBlocks>
struct Bf16Mma {
    using MMA = ptx::Wgmma16<BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // A warpgroup's 64 rows of A start 64 * 128 bytes apart in both majors: 64 K-major lines, or
    // one 64-row MN-major chunk of BLOCK_K lines. One 16-deep K step moves 32 bytes along a K-major
    // line, or 16 lines (2048 bytes) down an MN-major chunk; descriptors count 16 bytes.
    static constexpr uint32_t kStepA = kIsAMNMajor ? 2048 / 16 : 2;
    static constexpr uint32_t kStepB = kIsBMNMajor ? 2048 / 16 : 2;

    uint64_t* const& full_barriers;
    uint64_t* const& empty_barriers;
    uint32_t& stage;
    uint32_t& phase;
    // This warpgroup's WGMMA descriptors in stage 0; in stage s, those plus s times the stage's size.
    const uint64_t& desc_a_base;
    const uint64_t& desc_b_base;
    const uint32_t& lane;
    float (&accum)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void k_loop(bool is_guarded, const uint32_t (&num_valid_rows)[kNumWaves]) {
        // The stage whose WGMMAs may still run; freed once the next k-block's are issued.
        uint32_t in_flight_stage = 0;
        for (uint32_t k_block = 0; k_block < kNumKBlocks; ++k_block) {
            ptx::mbarrier_wait(&full_barriers[stage], phase);
            const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
            const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
            #pragma unroll
            for (uint32_t w = 0; w < kNumWaves; ++w) {
                if (is_guarded && num_valid_rows[w] == 0)
                    continue;
                ptx::wgmma_fence();
                const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * 128 >> 4);
                #pragma unroll
                for (uint32_t k = 0; k < Layout::BLOCK_K / 16; ++k)
                    MMA::template mma<kIsFP16, kIsAMNMajor, kIsBMNMajor>(
                        wave_desc_a + k * kStepA, desc_b + k * kStepB, accum[w], k_block > 0 || k > 0);
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

#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/promotion.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_fp8.cuh>

namespace deepgemm {

// One FP8 consumer warpgroup's mainloop over a tile: per 128-K block it waits for the stage, issues
// the block's WGMMAs into `accum`, frees the stage, and promotes the partial sum into `final_accum`
// with the rows' A scales (read from the stage) and the tile's B scales. The kernel builds one per
// tile. Its members refer to the kernel's own variables (`stage` and `phase`, its ring position, are
// advanced here): holding copies of the constant ones instead changed ptxas' instruction order.
// It runs kNumKBlocks k-blocks: the whole K loop, or one split-K slice (`tile_sfb` then points at the
// slice's first B scale).
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTMAMulticast,
          uint32_t kNumSliceKBlocks = Layout::kNumKBlocks>
struct Fp8MmaPromote {
    using MMA = ptx::WgmmaFP8<BLOCK_N>;
    using ScalesB = typename Layout::ScalesB;
    static constexpr uint32_t BLOCK_K = Layout::BLOCK_K;
    static constexpr uint32_t kNumKBlocks = kNumSliceKBlocks;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;

    uint64_t* const& full_barriers;
    uint64_t* const& empty_barriers;
    uint32_t& stage;
    uint32_t& phase;
    // This warpgroup's WGMMA descriptors and A scales in stage 0; in stage s, those plus s times
    // the stage's size.
    const uint64_t& desc_a_base;
    const uint64_t& desc_b_base;
    const float* const& sfa_base;
    const uint32_t& lane;
    // The tile's B scales (TileScalesB) and the column groups of 8 before its next scale block.
    const float* const& tile_sfb;
    const uint32_t& num_former_groups;
    float (&accum)[kNumAccum];
    float (&final_accum)[kNumWaves][kNumAccum];

    // One k-block at a time, every wave of it. With `is_guarded`, waves without valid rows (rows
    // outside every group: padding, past masked_m) cost no tensor-core work. The kernel compiles it
    // twice for kinds with invalid rows: tiles whose every wave has valid rows (nearly all of them)
    // run the unguarded loop, as the dense kind does, free of the per-wave test inside the loop.
    __device__ __forceinline__ void k_loop(bool is_guarded, const uint32_t (&num_valid_rows)[kNumWaves]) {
        for (uint32_t k_block = 0; k_block < kNumKBlocks; ++k_block) {
            ptx::mbarrier_wait(&full_barriers[stage], phase);
            float scale_b0, scale_b1;
            ScalesB::of_k_block(tile_sfb, k_block, scale_b0, scale_b1);

            const float* stage_sfa = sfa_base + stage * (Layout::kSmemSFABytes / 4);
            const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
            const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
            #pragma unroll
            for (uint32_t w = 0; w < kNumWaves; ++w) {
                // Read the A scales before the stage can be released and overwritten.
                const float scale_a0 = stage_sfa[w * Layout::kWaveM];
                const float scale_a1 = stage_sfa[w * Layout::kWaveM + 8];
                // Each 32-wide K step moves 32 bytes (2 descriptor units) along the swizzled row.
                const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * BLOCK_K >> 4);
                const bool is_active = !is_guarded || num_valid_rows[w] > 0;

                if (is_active) {
                    ptx::wgmma_fence();
                    #pragma unroll
                    for (uint32_t k = 0; k < BLOCK_K / 32; ++k)
                        MMA::mma(wave_desc_a + k * 2, desc_b + k * 2, accum, k > 0);
                    ptx::wgmma_commit_group();
                    ptx::wgmma_wait_group<0>();
                    #pragma unroll
                    for (uint32_t i = 0; i < kNumAccum; ++i)
                        ptx::fence_operand(accum[i]);
                }

                // Free the stage before promoting so the next TMA load overlaps the FFMAs.
                if (w == kNumWaves - 1)
                    release_stage<kNumTMAMulticast>(&empty_barriers[stage], lane);

                if (is_active)
                    promote_k_block<BLOCK_N>(num_former_groups, final_accum[w], accum, scale_a0, scale_a1,
                                             scale_b0, scale_b1);
            }
            if (++stage == kNumStages)
                stage = 0, phase ^= 1;
        }
    }

    // For one consumer warpgroup (Layout::kTwoAccumSets): k-block k + 1's WGMMAs go into a second
    // accumulator set before k-block k is promoted, so the tensor cores need not idle through the
    // promotion and the WGMMA wait (with two warpgroups, the other one fills that gap). Its three
    // steps are lambdas over local references to the members: written as member functions, or as
    // lambdas capturing `this`, they made ptxas order the loop's instructions differently.
    __device__ __forceinline__ void two_set_k_loop() {
        uint32_t& stage = this->stage;
        uint32_t& phase = this->phase;
        uint64_t* const& full_barriers = this->full_barriers;
        uint64_t* const& empty_barriers = this->empty_barriers;
        const uint64_t& desc_a_base = this->desc_a_base;
        const uint64_t& desc_b_base = this->desc_b_base;
        const float* const& sfa_base = this->sfa_base;
        const uint32_t& lane = this->lane;
        const float* const& tile_sfb = this->tile_sfb;
        const uint32_t& num_former_groups = this->num_former_groups;
        float (&accum)[kNumAccum] = this->accum;
        float (&final_accum)[kNumWaves][kNumAccum] = this->final_accum;
        // The second accumulator set; per set, the A scales and the stage of its k-block in flight.
        float accum_odd[kNumAccum];
        float scale_a[2][2];
        uint32_t issued_stage[2];

        // Waits for k-block `k_block`'s stage, reads its A scales and issues its WGMMAs into `acc`.
        auto issue = [&](uint32_t k_block, float (&acc)[kNumAccum], uint32_t set) {
            ptx::mbarrier_wait(&full_barriers[stage], phase);
            const float* stage_sfa = sfa_base + stage * (Layout::kSmemSFABytes / 4);
            scale_a[set][0] = stage_sfa[0];
            scale_a[set][1] = stage_sfa[8];
            const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
            const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
            ptx::wgmma_fence();
            #pragma unroll
            for (uint32_t k = 0; k < BLOCK_K / 32; ++k)
                MMA::mma(desc_a + k * 2, desc_b + k * 2, acc, k > 0);
            ptx::wgmma_commit_group();
            issued_stage[set] = stage;
            if (++stage == kNumStages)
                stage = 0, phase ^= 1;
        };
        // Once k-block `k_block`'s WGMMAs completed: frees its stage and promotes its sum.
        auto finish = [&](uint32_t k_block, float (&acc)[kNumAccum], uint32_t set) {
            #pragma unroll
            for (uint32_t i = 0; i < kNumAccum; ++i)
                ptx::fence_operand(acc[i]);
            release_stage<kNumTMAMulticast>(&empty_barriers[issued_stage[set]], lane);
            float scale_b0, scale_b1;
            ScalesB::of_k_block(tile_sfb, k_block, scale_b0, scale_b1);
            promote_k_block<BLOCK_N>(num_former_groups, final_accum[0], acc, scale_a[set][0], scale_a[set][1],
                                     scale_b0, scale_b1);
        };
        // Runs k-blocks [first, first + len), len a compile-time constant: even ones (counted from
        // `first`) accumulate in `accum`, odd ones in `accum_odd`. It starts and ends with no WGMMA in
        // flight: ptxas follows the two sets only through straight-line code (a set in flight across a
        // loop's back edge made it serialise every WGMMA).
        auto run_span = [&](uint32_t first, uint32_t len) {
            issue(first, accum, 0);
            #pragma unroll
            for (uint32_t i = 0; i < len; i += 2) {
                if (i + 1 < len) {
                    issue(first + i + 1, accum_odd, 1);
                    ptx::wgmma_wait_group<1>();
                } else {
                    ptx::wgmma_wait_group<0>();
                }
                finish(first + i, accum, 0);
                if (i + 1 == len)
                    break;
                if (i + 2 < len) {
                    issue(first + i + 2, accum, 0);
                    ptx::wgmma_wait_group<1>();
                } else {
                    ptx::wgmma_wait_group<0>();
                }
                finish(first + i + 1, accum_odd, 1);
            }
        };

        constexpr uint32_t kSpan = Layout::kTwoSetSpan;
        uint32_t k_block = 0;
        for (; k_block + kSpan <= kNumKBlocks; k_block += kSpan)
            run_span(k_block, kSpan);
        if constexpr (kNumKBlocks % kSpan != 0)
            run_span(k_block, kNumKBlocks % kSpan);
    }
};

}  // namespace deepgemm

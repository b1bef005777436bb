#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_fp8.cuh>

namespace deepgemm {

// One consumer warpgroup's mainloop over a tile of the 1D1D kernel: per 128-K block it waits for the
// stage, issues the block's WGMMAs into `accum`, reads its rows' A scales and its columns' B scales from
// the stage into registers while they run, frees the stage once they retired (the scales are in
// registers by then, so the next load overlaps the promotion), and promotes the partial sum into
// `final_accum`: final[r][c] += (sa[r] * sb[c]) * accum[r][c], every element its own scale product.
//
// The B scales of a thread's columns: the WGMMA fragment gives thread t the columns 8 * i + 2 * (t % 4)
// and the next, for every 8-column group i, so one 8-byte shared load per group fetches both (the 8
// rows of a quad-column share it: a broadcast). Reading them before the WGMMAs made every k-block's
// WGMMAs wait for the loads and for the scale products ptxas placed ahead of them.
//
// Two consumer warpgroups take turns issuing (`kTakeTurns`): warpgroup 0 issues a wave's WGMMAs, then
// warpgroup 1 its own, then warpgroup 0 the next wave's, and so on, handing the turn over through two
// hardware barriers (`turn_barrier(g)`: warpgroup g may issue). The tensor cores then run one
// warpgroup's WGMMAs while the other promotes, rather than both warpgroups' WGMMAs at once and then both
// promotions with the tensor cores idle: the promotion (a multiply and a fused multiply-add per
// accumulator element) hides under the other warpgroup's WGMMAs. Warpgroup 1 gives warpgroup 0 its
// first turn (`start_turns`) and warpgroup 0 takes the turn once more after its last tile (`end_turns`),
// so every arrival on a turn barrier meets exactly one wait.
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTMAMulticast>
struct WgradMmaPromote {
    using MMA = ptx::WgmmaFP8<BLOCK_N>;
    static constexpr uint32_t BLOCK_K = Layout::BLOCK_K;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    static constexpr uint32_t kNumGroups = kNumAccum / 4;
    static constexpr bool kTakeTurns = Layout::kNumMathWarpgroups == 2;
    static constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;

    uint64_t* const& full_barriers;
    uint64_t* const& empty_barriers;
    uint32_t& stage;
    uint32_t& phase;
    // This warpgroup's WGMMA descriptors and scale addresses in stage 0; in stage s, those plus s times
    // the stage's size.
    const uint64_t& desc_a_base;
    const uint64_t& desc_b_base;
    const float* const& sfa_base;
    const float* const& sfb_base;
    const uint32_t& lane;
    const uint32_t& warpgroup;
    float (&accum)[kNumAccum];
    float (&final_accum)[kNumWaves][kNumAccum];

    static __device__ __forceinline__ uint32_t turn_barrier(uint32_t g) { return Layout::kTurnBarrier + g; }

    // Before the first tile: warpgroup 1 hands warpgroup 0 the first turn.
    __device__ __forceinline__ void start_turns() const {
        if constexpr (kTakeTurns) {
            if (warpgroup == 1)
                ptx::named_barrier_arrive(turn_barrier(0), kNumMathThreads);
        }
    }

    // After the last tile: warpgroup 0 takes the turn warpgroup 1 handed it after its last WGMMAs.
    __device__ __forceinline__ void end_turns() const {
        if constexpr (kTakeTurns) {
            if (warpgroup == 0)
                ptx::named_barrier_sync(turn_barrier(0), kNumMathThreads);
        }
    }

    __device__ __forceinline__ void k_loop(uint32_t num_k_blocks) {
        for (uint32_t k_block = 0; k_block < num_k_blocks; ++k_block) {
            ptx::mbarrier_wait(&full_barriers[stage], phase);
            const float* stage_sfa = sfa_base + stage * (Layout::kSmemSFABytes / 4);
            const float* stage_sfb = sfb_base + stage * (Layout::kSmemSFBBytes / 4);
            const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
            const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
            Float2 scale_b[kNumGroups];
            #pragma unroll
            for (uint32_t w = 0; w < kNumWaves; ++w) {
                // Each 32-wide K step moves 32 bytes (2 descriptor units) along the swizzled row.
                const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * BLOCK_K >> 4);
                if constexpr (kTakeTurns)
                    ptx::named_barrier_sync(turn_barrier(warpgroup), kNumMathThreads);
                ptx::wgmma_fence();
                #pragma unroll
                for (uint32_t k = 0; k < BLOCK_K / 32; ++k)
                    MMA::mma(wave_desc_a + k * 2, desc_b + k * 2, accum, k > 0);
                ptx::wgmma_commit_group();
                if constexpr (kTakeTurns)
                    ptx::named_barrier_arrive(turn_barrier(warpgroup ^ 1), kNumMathThreads);

                // The scales are read while the WGMMAs run: the stage stays ours until it is released
                // below.
                const float scale_a0 = stage_sfa[w * Layout::kWaveM];
                const float scale_a1 = stage_sfa[w * Layout::kWaveM + 8];
                if (w == 0) {
                    #pragma unroll
                    for (uint32_t i = 0; i < kNumGroups; ++i)
                        scale_b[i] = *reinterpret_cast<const Float2*>(stage_sfb + i * 8);
                }
                ptx::wgmma_wait_group<0>();
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    ptx::fence_operand(accum[i]);

                // Every scale of the stage is in registers once the last wave's WGMMAs retired.
                if (w == kNumWaves - 1)
                    release_stage<kNumTMAMulticast>(&empty_barriers[stage], lane);

                float* out = final_accum[w];
                #pragma unroll
                for (uint32_t i = 0; i < kNumGroups; ++i) {
                    out[i * 4 + 0] += (scale_a0 * scale_b[i].x) * accum[i * 4 + 0];
                    out[i * 4 + 1] += (scale_a0 * scale_b[i].y) * accum[i * 4 + 1];
                    out[i * 4 + 2] += (scale_a1 * scale_b[i].x) * accum[i * 4 + 2];
                    out[i * 4 + 3] += (scale_a1 * scale_b[i].y) * accum[i * 4 + 3];
                }
            }
            if (++stage == kNumStages)
                stage = 0, phase ^= 1;
        }
    }
};

}  // namespace deepgemm

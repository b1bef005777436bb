#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_fp8.cuh>

namespace deepgemm {

// One consumer warpgroup's mainloop over a tile of the 1D1D kernel: per 128-K block it waits for the
// stage, reads its rows' A scales and its columns' B scales from the stage into registers, issues the
// block's WGMMAs into `accum`, frees the stage once they retired (the scales are in registers by then,
// so the next load overlaps the promotion), and promotes the partial sum into `final_accum`:
// final[r][c] += (sa[r] * sb[c]) * accum[r][c], every element its own scale product.
//
// The B scales of a thread's columns: the WGMMA fragment gives thread t the columns 8 * i + 2 * (t % 4)
// and the next, for every 8-column group i, so one 8-byte shared load per group fetches both (the 8
// rows of a quad-column share it: a broadcast). They are read before the WGMMAs are issued, so their
// latency passes under the tensor cores'.
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTMAMulticast>
struct WgradMmaPromote {
    using MMA = ptx::WgmmaFP8<BLOCK_N>;
    static constexpr uint32_t BLOCK_K = Layout::BLOCK_K;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    static constexpr uint32_t kNumGroups = kNumAccum / 4;

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
    float (&accum)[kNumAccum];
    float (&final_accum)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void k_loop(uint32_t num_k_blocks) {
        for (uint32_t k_block = 0; k_block < num_k_blocks; ++k_block) {
            ptx::mbarrier_wait(&full_barriers[stage], phase);
            const float* stage_sfa = sfa_base + stage * (Layout::kSmemSFABytes / 4);
            const float* stage_sfb = sfb_base + stage * (Layout::kSmemSFBBytes / 4);
            Float2 scale_b[kNumGroups];
            #pragma unroll
            for (uint32_t i = 0; i < kNumGroups; ++i)
                scale_b[i] = *reinterpret_cast<const Float2*>(stage_sfb + i * 8);
            const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
            const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
            #pragma unroll
            for (uint32_t w = 0; w < kNumWaves; ++w) {
                const float scale_a0 = stage_sfa[w * Layout::kWaveM];
                const float scale_a1 = stage_sfa[w * Layout::kWaveM + 8];
                // Each 32-wide K step moves 32 bytes (2 descriptor units) along the swizzled row.
                const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * BLOCK_K >> 4);
                ptx::wgmma_fence();
                #pragma unroll
                for (uint32_t k = 0; k < BLOCK_K / 32; ++k)
                    MMA::mma(wave_desc_a + k * 2, desc_b + k * 2, accum, k > 0);
                ptx::wgmma_commit_group();
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

#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>

namespace deepgemm {

// FP32 promotion of one 128-K partial sum: final += scale * accum, where the scale is the A scale of
// the row times the B scale of the column's 128-column block. Accumulator column group i (8 columns)
// uses the first B scale for i < kNumFormer and the second after it.
template <uint32_t kNumFormer, uint32_t kNumAccum>
__device__ __forceinline__ void promote(float (&final_accum)[kNumAccum], const float (&accum)[kNumAccum],
                                        float s00, float s01, float s10, float s11) {
    #pragma unroll
    for (uint32_t i = 0; i < kNumAccum / 4; ++i) {
        const float s0 = i < kNumFormer ? s00 : s01, s1 = i < kNumFormer ? s10 : s11;
        final_accum[i * 4 + 0] += s0 * accum[i * 4 + 0];
        final_accum[i * 4 + 1] += s0 * accum[i * 4 + 1];
        final_accum[i * 4 + 2] += s1 * accum[i * 4 + 2];
        final_accum[i * 4 + 3] += s1 * accum[i * 4 + 3];
    }
}

// Promotion for a tile whose column groups switch B scale at a run-time group `num_former`. A
// per-element select would cost three extra instructions per four FFMAs; instead one uniform branch
// per 128-K block picks a promotion compiled for that boundary. Only boundaries reachable by tiles
// of width BLOCK_N are instantiated: multiples of gcd(BLOCK_N, 128) / 8 up to 128 / 8 groups.
template <uint32_t BLOCK_N, uint32_t kCandidate = 128 / 8, uint32_t kNumAccum>
__device__ __forceinline__ void promote_straddling(uint32_t num_former, float (&final_accum)[kNumAccum],
                                                   const float (&accum)[kNumAccum],
                                                   float s00, float s01, float s10, float s11) {
    constexpr uint32_t kStep = gcd(BLOCK_N, 128u) / 8;
    if constexpr (kCandidate >= kStep) {
        if (num_former == kCandidate || kCandidate == kStep)
            promote<kCandidate>(final_accum, accum, s00, s01, s10, s11);
        else
            promote_straddling<BLOCK_N, kCandidate - kStep>(num_former, final_accum, accum, s00, s01, s10, s11);
    }
}

// Promotes one 128-K block of a tile BLOCK_N wide: the scales are the products of the thread's two
// rows' A scales with the tile's B scale (or, when the tile straddles a 128-column block, its two B
// scales, switching at column group `num_former`).
template <uint32_t BLOCK_N, uint32_t kNumAccum>
__device__ __forceinline__ void promote_k_block(uint32_t num_former, float (&final_accum)[kNumAccum],
                                                const float (&accum)[kNumAccum], float scale_a0, float scale_a1,
                                                float scale_b0, float scale_b1) {
    const float s00 = scale_a0 * scale_b0, s01 = scale_a0 * scale_b1;
    const float s10 = scale_a1 * scale_b0, s11 = scale_a1 * scale_b1;
    if constexpr (128 % BLOCK_N == 0)
        promote<kNumAccum / 4>(final_accum, accum, s00, s01, s10, s11);
    else
        promote_straddling<BLOCK_N>(num_former, final_accum, accum, s00, s01, s10, s11);
}

}  // namespace deepgemm

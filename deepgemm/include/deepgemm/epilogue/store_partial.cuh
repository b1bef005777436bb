#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// Split-K's epilogue: one consumer warpgroup's rows of every wave of an FP32 partial tile, written from
// the accumulator registers straight to slice `split` of the workspace, FP32 [splits, M, N] row-major
// (`row_bytes` = N * 4 apart, `slice_bytes` = M * N * 4). Rows from `shape_m` and columns from `shape_n`
// on are outside D and not written, so the workspace holds exactly M x N values per slice and the
// reduction (impls/sm90_split_k_reduce.cuh) reads no padding. Plain 8-byte stores of each thread's
// column pairs (row `row` and `row + 8`, columns 8 * i + 2 * quad, as the WGMMA wrappers lay them out):
// a warp's store covers 8 rows x 32 bytes, whole sectors; the tile needs no staging in shared memory.
template <uint32_t BLOCK_N, uint32_t kNumWaves, uint32_t kWaveM, uint32_t kNumAccum>
__device__ __forceinline__ void store_partial(const float (&accum)[kNumWaves][kNumAccum], uint8_t* workspace,
                                              uint64_t row_bytes, uint64_t slice_bytes, uint32_t split,
                                              const Tile& tile, uint32_t row_in_wave, uint32_t quad,
                                              uint32_t shape_m, uint32_t shape_n) {
    static_assert(kNumAccum * 2 >= BLOCK_N, "the accumulator covers the tile's columns");
    const uint32_t first_col = tile.n_block * BLOCK_N;
    uint8_t* slice = workspace + split * slice_bytes + first_col * sizeof(float);
    #pragma unroll
    for (uint32_t w = 0; w < kNumWaves; ++w) {
        #pragma unroll
        for (uint32_t half = 0; half < 2; ++half) {
            const uint32_t row = tile.row + w * kWaveM + row_in_wave + half * 8;
            if (row >= shape_m)
                continue;
            float* dst = reinterpret_cast<float*>(slice + row * row_bytes);
            #pragma unroll
            for (uint32_t i = 0; i < BLOCK_N / 8; ++i) {
                const uint32_t col = i * 8 + quad * 2;
                // Columns come in pairs and N is even: a pair is wholly inside or outside.
                if (first_col + col < shape_n)
                    *reinterpret_cast<Float2*>(dst + col) = {accum[w][i * 4 + half * 2], accum[w][i * 4 + half * 2 + 1]};
            }
        }
    }
}

}  // namespace deepgemm

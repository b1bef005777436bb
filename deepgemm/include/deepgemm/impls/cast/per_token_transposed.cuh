#pragma once

#include <deepgemm/impls/cast/quantize.cuh>

namespace deepgemm {

// Transposed per-token FP8 cast, for the weight gradient's operands (the reduction runs over tokens):
// x [rows, cols] (row stride `x_row_stride` elements; rows are tokens) to q = xᵀ [cols, out_cols] in
// FP8 (row stride `q_row_stride` bytes) with one scale per 128 tokens of each column:
// sf[c, rb] = the scale of x[128 rb : 128 rb + 128, c], stored at sf + c * sf_row_stride +
// rb * sf_col_stride. Columns rows..out_cols-1 of q (out_cols <= the next multiple of 128) are
// written as zeros, which pads the token count for a GEMM that wants whole 128-token blocks.
//
// A CTA takes a tile of 128 tokens x 64 columns: 8 lanes x 8 elements read each token's 64 columns
// (coalesced 16-byte loads) into shared memory as FP32; then each warp owns 8 columns, lane l holding
// tokens l, l + 32, l + 64, l + 96 of a column (the padded row stride of 65 words keeps those reads
// free of bank conflicts), reduces the column's amax over the warp and writes its bytes, each store
// instruction 32 consecutive bytes of a row of q.
template <cast::InType kIn, bool kVec>
__global__ void __launch_bounds__(256) fp8_cast_per_token_transposed(
        const void* x, uint64_t x_row_stride, uint32_t rows, uint32_t cols, uint32_t out_cols, uint8_t* q,
        uint64_t q_row_stride, float* sf, uint64_t sf_row_stride, uint64_t sf_col_stride, float amax_floor) {
    using namespace cast;
    constexpr uint32_t kWarps = 8;
    constexpr uint32_t kTileCols = 64;
    constexpr uint32_t kLanesPerRow = kTileCols / kVecElems;
    constexpr uint32_t kRowsPerPass = kWarps * (32 / kLanesPerRow);
    constexpr uint32_t kColsPerWarp = kTileCols / kWarps;
    constexpr uint32_t kStride = kTileCols + 1;
    static_assert(kBlock % kRowsPerPass == 0 && kBlock / 32 == 4, "tile shape");
    __shared__ float tile[kBlock * kStride];

    const uint32_t col_tiles = ceil_div(cols, kTileCols);
    const uint32_t num_tiles = ceil_div(out_cols, kBlock) * col_tiles;
    const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (uint32_t t = blockIdx.x; t < num_tiles; t += gridDim.x) {
        const uint32_t rb = t / col_tiles;
        const uint32_t col0 = (t % col_tiles) * kTileCols;

        // Tokens of the tile in, as FP32 (zeros past `rows` and `cols`).
        const uint32_t c_in = (lane % kLanesPerRow) * kVecElems;
        #pragma unroll
        for (uint32_t p = 0; p < kBlock / kRowsPerPass; ++p) {
            const uint32_t r = p * kRowsPerPass + warp * (32 / kLanesPerRow) + lane / kLanesPerRow;
            const uint32_t row = rb * kBlock + r;
            const void* row_ptr = static_cast<const char*>(x) + row * x_row_stride * Input<kIn>::kBytes;
            float v[kVecElems];
            load_segment<kIn, kVec>(row_ptr, col0 + c_in, cols, row < rows, v);
            #pragma unroll
            for (uint32_t i = 0; i < kVecElems; ++i)
                tile[r * kStride + c_in + i] = v[i];
        }
        __syncthreads();

        // Columns out: one warp per 8 columns, a column's 128 tokens across the lanes.
        #pragma unroll 1
        for (uint32_t cc = 0; cc < kColsPerWarp; ++cc) {
            const uint32_t c = warp * kColsPerWarp + cc;
            if (col0 + c >= cols)
                break;  // the same for the whole warp: no lane is left out of the shuffles
            float v[4];
            float amax = 0.0f;
            #pragma unroll
            for (uint32_t j = 0; j < 4; ++j) {
                v[j] = tile[(lane + 32 * j) * kStride + c];
                amax = ptx::max_nan(amax, ptx::abs_f32(v[j]));
            }
            const float scale = block_scale(group_max<32>(amax), amax_floor);
            uint8_t* q_row = q + uint64_t(col0 + c) * q_row_stride;
            #pragma unroll
            for (uint32_t j = 0; j < 4; j += 2) {
                const uint32_t pair = fp8_pair(scaled(v[j], scale), scaled(v[j + 1], scale));
                const uint32_t r0 = rb * kBlock + lane + 32 * j;
                if (r0 < out_cols)
                    q_row[r0] = static_cast<uint8_t>(pair);
                if (r0 + 32 < out_cols)
                    q_row[r0 + 32] = static_cast<uint8_t>(pair >> 8);
            }
            if (lane == 0)
                sf[(col0 + c) * sf_row_stride + rb * sf_col_stride] = scale;
        }
        // The next tile overwrites `tile` only once every warp has read its columns.
        __syncthreads();
    }
}

}  // namespace deepgemm

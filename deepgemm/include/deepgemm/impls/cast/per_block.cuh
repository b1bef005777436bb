#pragma once

#include <deepgemm/impls/cast/quantize.cuh>

namespace deepgemm {

// Per-block ("128x128") FP8 cast of a weight: x [rows, cols] (row stride `x_row_stride` elements) to
// q [rows, cols] (contiguous) and sf [ceil(rows/128), ceil(cols/128)] (contiguous, row-major).
// One CTA of 256 threads owns a block at a time: each half-warp reads 8 of its rows (16 lanes x 8
// elements per row), the block's amax goes through a warp max and one shared-memory exchange, and
// the bytes are written from the registers the input was read into (one read of x).
template <cast::InType kIn, bool kVec>
__global__ void __launch_bounds__(256) fp8_cast_per_block(const void* x, uint64_t x_row_stride, uint32_t rows,
                                                          uint32_t cols, uint8_t* q, float* sf,
                                                          float amax_floor) {
    using namespace cast;
    constexpr uint32_t kWarps = 8;
    constexpr uint32_t kRowsPerPass = kWarps * 2;
    constexpr uint32_t kPasses = kBlock / kRowsPerPass;
    static_assert(kBlock / kVecElems == 16, "a half-warp covers one 128-column block row");
    __shared__ float warp_amax[kWarps];

    const uint32_t blocks_per_row = ceil_div(cols, kBlock);
    const uint32_t num_blocks = ceil_div(rows, kBlock) * blocks_per_row;
    const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t sub = lane % 16;

    for (uint32_t block = blockIdx.x; block < num_blocks; block += gridDim.x) {
        const uint32_t row0 = (block / blocks_per_row) * kBlock + warp * 2 + lane / 16;
        const uint32_t col = (block % blocks_per_row) * kBlock + sub * kVecElems;

        float v[kPasses][kVecElems];
        float amax = 0.0f;
        #pragma unroll
        for (uint32_t p = 0; p < kPasses; ++p) {
            const uint32_t row = row0 + p * kRowsPerPass;
            const void* row_ptr = static_cast<const char*>(x) + row * x_row_stride * Input<kIn>::kBytes;
            load_segment<kIn, kVec>(row_ptr, col, cols, row < rows, v[p]);
            amax = abs_max(amax, v[p]);
        }
        amax = group_max<32>(amax);
        if (lane == 0)
            warp_amax[warp] = amax;
        __syncthreads();
        #pragma unroll
        for (uint32_t w = 0; w < kWarps; ++w)
            amax = ptx::max_nan(amax, warp_amax[w]);
        // Every warp has read warp_amax before the next block's warp 0 lane 0 may overwrite it.
        __syncthreads();

        const float scale = block_scale(amax, amax_floor);
        if (threadIdx.x == 0)
            sf[block] = scale;
        if (col < cols) {
            #pragma unroll
            for (uint32_t p = 0; p < kPasses; ++p) {
                const uint32_t row = row0 + p * kRowsPerPass;
                if (row < rows) {
                    uint32_t w0, w1;
                    quantize8(v[p], scale, w0, w1);
                    store_segment<kVec>(q + uint64_t(row) * cols + col, w0, w1, min_of(cols - col, kVecElems));
                }
            }
        }
    }
}

}  // namespace deepgemm

#pragma once

#include <deepgemm/impls/cast/quantize.cuh>

namespace deepgemm {

// Per-token ("1x128") FP8 cast: x [rows, cols] (row stride `x_row_stride` elements) to q [rows, cols]
// (contiguous) with sf[row, g] = the scale of columns [128 g, 128 g + 128) of the row, stored at
// sf + row * sf_row_stride + g * sf_col_stride (row-major or MN-major, as the caller wants it).
// Each half-warp owns one (row, 128-column group): 16 lanes x 8 elements, one read of the input, a
// 16-lane max, then the quantised bytes from the same registers. A grid-stride loop over the groups
// keeps the grid, hence the launcher, independent of the size.
template <cast::InType kIn, bool kVec>
__global__ void __launch_bounds__(256) fp8_cast_per_token(const void* x, uint64_t x_row_stride, uint32_t rows,
                                                          uint32_t cols, uint8_t* q, float* sf,
                                                          uint64_t sf_row_stride, uint64_t sf_col_stride,
                                                          float amax_floor) {
    using namespace cast;
    constexpr uint32_t kLanesPerGroup = kBlock / kVecElems;
    static_assert(kLanesPerGroup == 16, "two 128-column groups per warp");
    const uint32_t groups_per_row = ceil_div(cols, kBlock);
    const uint64_t num_groups = uint64_t(rows) * groups_per_row;
    const uint32_t lane = threadIdx.x % 32;
    const uint32_t sub = lane % kLanesPerGroup;
    const uint64_t warp = (uint64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const uint64_t num_warps = uint64_t(gridDim.x) * blockDim.x / 32;

    // The loop bound is the same for the whole warp, so every lane reaches the shuffles.
    for (uint64_t first = warp * 2; first < num_groups; first += num_warps * 2) {
        const uint64_t group = first + lane / kLanesPerGroup;
        const bool valid = group < num_groups;
        const uint32_t row = valid ? static_cast<uint32_t>(group / groups_per_row) : 0;
        const uint32_t g = valid ? static_cast<uint32_t>(group % groups_per_row) : 0;
        const uint32_t col = g * kBlock + sub * kVecElems;
        const void* row_ptr = static_cast<const char*>(x) + row * x_row_stride * Input<kIn>::kBytes;

        float v[kVecElems];
        load_segment<kIn, kVec>(row_ptr, col, cols, valid, v);
        const float scale = block_scale(group_max<kLanesPerGroup>(abs_max(0.0f, v)), amax_floor);
        if (valid && col < cols) {
            uint32_t w0, w1;
            quantize8(v, scale, w0, w1);
            store_segment<kVec>(q + uint64_t(row) * cols + col, w0, w1, min_of(cols - col, kVecElems));
            if (sub == 0)
                sf[row * sf_row_stride + g * sf_col_stride] = scale;
        }
    }
}

}  // namespace deepgemm

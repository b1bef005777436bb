#pragma once

#include <deepgemm/impls/cast/quantize.cuh>

namespace deepgemm {

namespace cast {

// The 128x128 FP8 block in shared memory for the transposed write: 128 rows of 32 words (4 bytes =
// 4 columns each). Word w of row r sits at word w ^ swizzle(r), so that the row-wise writes (a
// half-warp per row, two adjacent rows per warp) and the 4-row column reads (lane l reads rows
// 4l..4l+3) both hit 32 distinct banks.
struct TransposeTile {
    static constexpr uint32_t kWords = kBlock / 4;
    uint32_t word[kBlock * kWords];

    __device__ static uint32_t index(uint32_t row, uint32_t w) {
        return row * kWords + (w ^ (((row >> 2) & (kWords - 1)) ^ (row & 1)));
    }
};

// Rows r..r+3 of a 4x4 byte block (one word per row, column j in byte j) as its columns: out[j]
// holds column j, row r + i in byte i.
__device__ __forceinline__ void transpose4x4(const uint32_t (&rows)[4], uint32_t (&out)[4]) {
    const uint32_t lo01 = ptx::prmt(rows[0], rows[1], 0x5140u), lo23 = ptx::prmt(rows[2], rows[3], 0x5140u);
    const uint32_t hi01 = ptx::prmt(rows[0], rows[1], 0x7362u), hi23 = ptx::prmt(rows[2], rows[3], 0x7362u);
    out[0] = ptx::prmt(lo01, lo23, 0x5410u);
    out[1] = ptx::prmt(lo01, lo23, 0x7632u);
    out[2] = ptx::prmt(hi01, hi23, 0x5410u);
    out[3] = ptx::prmt(hi01, hi23, 0x7632u);
}

}  // namespace cast

// Per-block ("128x128") FP8 cast of a weight: x [rows, cols] (row stride `x_row_stride` elements) to
// q [rows, cols] (contiguous) and sf [ceil(rows/128), ceil(cols/128)] (contiguous, row-major); with
// kTransposed also qt = qᵀ [cols, rows] and sft = sfᵀ (both contiguous), the operand of the data
// gradient, from the same registers (a 128x128 scale is shared by the transpose).
// One CTA of 256 threads owns a block at a time: each half-warp reads 8 of its rows (16 lanes x 8
// elements per row), the block's amax goes through a warp max and one shared-memory exchange, and
// the bytes are written from the registers the input was read into (one read of x). The transposed
// block goes through shared memory: each lane then writes 4 rows x 4 bytes of qt, a warp's stores
// covering 128 consecutive bytes of a row of qt.
template <cast::InType kIn, bool kVec, bool kTransposed>
__global__ void __launch_bounds__(256) fp8_cast_per_block(const void* x, uint64_t x_row_stride, uint32_t rows,
                                                          uint32_t cols, uint8_t* q, float* sf, uint8_t* qt,
                                                          float* sft, float amax_floor) {
    using namespace cast;
    constexpr uint32_t kWarps = 8;
    constexpr uint32_t kRowsPerPass = kWarps * 2;
    constexpr uint32_t kPasses = kBlock / kRowsPerPass;
    static_assert(kBlock / kVecElems == 16, "a half-warp covers one 128-column block row");
    static_assert(TransposeTile::kWords == 32 && kWarps * 4 == TransposeTile::kWords, "a warp per 4 words");
    __shared__ float warp_amax[kWarps];
    __shared__ TransposeTile tile;

    const uint32_t blocks_per_row = ceil_div(cols, kBlock);
    const uint32_t num_row_blocks = ceil_div(rows, kBlock);
    const uint32_t num_blocks = num_row_blocks * blocks_per_row;
    const uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const uint32_t sub = lane % 16;

    for (uint32_t block = blockIdx.x; block < num_blocks; block += gridDim.x) {
        const uint32_t block_row = block / blocks_per_row, block_col = block % blocks_per_row;
        const uint32_t r0 = warp * 2 + lane / 16;  // this thread's first row in the block
        const uint32_t row0 = block_row * kBlock + r0;
        const uint32_t col = block_col * kBlock + sub * kVecElems;

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
        if (threadIdx.x == 0) {
            sf[block] = scale;
            if constexpr (kTransposed)
                sft[block_col * num_row_blocks + block_row] = scale;
        }
        #pragma unroll
        for (uint32_t p = 0; p < kPasses; ++p) {
            const uint32_t row = row0 + p * kRowsPerPass;
            uint32_t w0, w1;
            quantize8(v[p], scale, w0, w1);
            if (row < rows && col < cols)
                store_segment<kVec>(q + uint64_t(row) * cols + col, w0, w1, min_of(cols - col, kVecElems));
            if constexpr (kTransposed) {
                // Bytes past the tensor's edge are zeros of the zero padding; they are never stored.
                tile.word[TransposeTile::index(r0 + p * kRowsPerPass, sub * 2)] = w0;
                tile.word[TransposeTile::index(r0 + p * kRowsPerPass, sub * 2 + 1)] = w1;
            }
        }

        if constexpr (kTransposed) {
            __syncthreads();
            // Lane l: rows 4l..4l+3 of the block, i.e. columns of qt; warp w: words 4w..4w+3, i.e. the
            // 16 rows of qt from block column 16w.
            const uint32_t qt_col = block_row * kBlock + lane * 4;
            #pragma unroll
            for (uint32_t i = 0; i < 4; ++i) {
                const uint32_t w = warp * 4 + i;
                uint32_t block_rows[4], columns[4];
                #pragma unroll
                for (uint32_t k = 0; k < 4; ++k)
                    block_rows[k] = tile.word[TransposeTile::index(lane * 4 + k, w)];
                transpose4x4(block_rows, columns);
                #pragma unroll
                for (uint32_t j = 0; j < 4; ++j) {
                    const uint32_t qt_row = block_col * kBlock + w * 4 + j;
                    if (qt_row >= cols || qt_col >= rows)
                        continue;
                    uint8_t* dst = qt + uint64_t(qt_row) * rows + qt_col;
                    if (rows % 4 == 0) {
                        *reinterpret_cast<uint32_t*>(dst) = columns[j];
                    } else {
                        for (uint32_t b = 0; b < 4 && qt_col + b < rows; ++b)
                            dst[b] = static_cast<uint8_t>(columns[j] >> (8 * b));
                    }
                }
            }
            // The next block writes the tile only after two more barriers, and every thread has read
            // its words by then.
        }
    }
}

}  // namespace deepgemm

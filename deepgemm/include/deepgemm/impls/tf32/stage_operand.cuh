#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>

// Writes an FP32 operand x [rows, K] (any strides) into the K-major layout the TF32 GEMM reads,
// out [rows, parts, K] with `out_row_stride` / `out_part_stride` elements between rows and parts:
// - kSplit = false: one part, x itself (a transposing copy for an MN-major x);
// - kSplit = true: two parts for 3xTF32, hi = x rounded to the nearest TF32 and lo = x - hi rounded
//   to the nearest TF32 (hi + lo carries about 22 of x's 24 mantissa bits, and the tensor cores
//   read both exactly).
// TF32 WGMMA reads K-major shared memory only, so this is how every operand that is not stored
// K-major reaches the kernel; the split, which must write new tensors anyway, does the transpose in
// the same pass. Each CTA walks 32 x 32 tiles (rows x K) through shared memory: the loads run along
// x's contiguous dim (kIsKContiguous: K, else rows), the stores along K.
namespace deepgemm {

template <bool kIsKContiguous, bool kSplit>
__global__ void __launch_bounds__(256)
tf32_stage_operand(const float* __restrict__ x, uint32_t rows, uint32_t k, uint64_t x_row_stride,
                   uint64_t x_k_stride, float* __restrict__ out, uint64_t out_row_stride, uint64_t out_part_stride) {
    constexpr uint32_t kTile = 32, kRowsPerPass = 8;
    // One padding column: a column of the tile read by a warp hits 32 different banks.
    __shared__ float tile[kTile][kTile + 1];
    const uint32_t lane = threadIdx.x % kTile, warp = threadIdx.x / kTile;
    const uint32_t num_k_tiles = ceil_div(k, kTile);
    const uint64_t num_tiles = uint64_t{ceil_div(rows, kTile)} * num_k_tiles;
    for (uint64_t t = blockIdx.x; t < num_tiles; t += gridDim.x) {
        const uint32_t row0 = static_cast<uint32_t>(t / num_k_tiles) * kTile;
        const uint32_t k0 = static_cast<uint32_t>(t % num_k_tiles) * kTile;
        #pragma unroll
        for (uint32_t i = 0; i < kTile / kRowsPerPass; ++i) {
            // tile[r][c] holds x[row0 + r, k0 + c]; a warp reads 32 consecutive elements of x.
            const uint32_t r = kIsKContiguous ? warp + i * kRowsPerPass : lane;
            const uint32_t c = kIsKContiguous ? lane : warp + i * kRowsPerPass;
            if (row0 + r < rows && k0 + c < k)
                tile[r][c] = x[(row0 + r) * x_row_stride + (k0 + c) * x_k_stride];
        }
        __syncthreads();
        #pragma unroll
        for (uint32_t i = 0; i < kTile / kRowsPerPass; ++i) {
            const uint32_t r = warp + i * kRowsPerPass;
            if (row0 + r < rows && k0 + lane < k) {
                const float value = tile[r][lane];
                float* dst = out + (row0 + r) * out_row_stride + k0 + lane;
                if constexpr (kSplit) {
                    const float hi = ptx::round_to_tf32(value);
                    dst[0] = hi;
                    dst[out_part_stride] = ptx::round_to_tf32(value - hi);
                } else {
                    dst[0] = value;
                }
            }
        }
        __syncthreads();
    }
}

}  // namespace deepgemm

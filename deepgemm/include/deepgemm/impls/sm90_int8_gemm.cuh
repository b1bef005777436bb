#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/int8/dequantize.cuh>
#include <deepgemm/impls/int8/mma.cuh>
#include <deepgemm/impls/unpromoted/kernel.cuh>
#include <deepgemm/impls/unpromoted/layout.cuh>
#include <deepgemm/impls/unpromoted/loader.cuh>

// D[M, N] = A[M, K] * B[N, K]^T with signed 8-bit operands (W8A8) and exact s32 accumulation in the
// tensor cores; the epilogue either stores the s32 sums as they are (Int8Out::Int32) or applies the
// per-token / per-channel scales, the optional zero-point correction and bias
// (impls/int8/dequantize.cuh) and stores BF16, FP16 or FP32.
//
// The pipeline is the skeleton the 16-bit and TF32 kernels run too (impls/unpromoted/kernel.cuh):
// with integer sums there is nothing to promote, so the accumulators stay in the tensor cores' hands
// across k-blocks. This file adds the WGMMAs (m64nNk32, s8 x s8 -> s32; 8-bit WGMMA reads both
// operands K-major only, hence NT only) and the epilogue. A k-block is one 128-byte line of K, as for
// FP8. The grouped kinds are the other families'.
namespace deepgemm {

// The epilogue's store type: the s32 sums travel as FP32 bits (the FP32 store path moves bits only).
template <Int8Out kOut>
constexpr OutType kInt8StoreType = kOut == Int8Out::BF16 ? OutType::BF16
                                   : kOut == Int8Out::FP16 ? OutType::FP16 : OutType::FP32;

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          Int8Out kOut, uint32_t kNumDChunks, GemmKind kKind>
struct Int8GemmLayout
    : UnpromotedLayout<BLOCK_M, BLOCK_N, 128, 1, kNumStages,
                       kOut == Int8Out::BF16 || kOut == Int8Out::FP16 ? 2u : 4u, kNumDChunks,
                       KindTraits<kKind>::kHandsOffTiles> {
    // 128 int8 of K: one 128-byte swizzle line per operand row and stage.
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, 128u);

    static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "integer WGMMA N is a multiple of 16 up to 256 here");
    static_assert(SHAPE_N % 2 == 0, "N is even: a thread's column pair is wholly inside or outside D");
};

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, Int8Out kOut, Int8Bias kBias, bool kHasAzp,
          uint32_t kSwizzleDBytes, uint32_t kNumDChunks, uint32_t kLoadBatch, GemmKind kKind>
__global__ void __launch_bounds__(
    (Int8GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kOut, kNumDChunks, kKind>::kNumThreads), 1)
sm90_int8_gemm(uint32_t shape_m, uint32_t num_groups, const int32_t* __restrict__ grouped_layout,
               const float* sa, uint32_t sa_group_stride, uint32_t sa_row_stride,
               const float* sb, uint32_t sb_group_stride, uint32_t sb_col_stride,
               const void* bias, uint32_t bias_group_stride,
               const int32_t* zp, uint32_t zp_group_stride, uint32_t zp_row_stride,
               const int32_t* b_sums, uint32_t b_sums_group_stride,
               uint8_t* d, uint64_t d_row_bytes, uint64_t d_group_bytes,
               const __grid_constant__ TmaDescriptor tmap_a, const __grid_constant__ TmaDescriptor tmap_b,
               const __grid_constant__ TmaDescriptor tmap_d) {
    using Layout = Int8GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kOut, kNumDChunks, kKind>;
    using StageLoader =
        UnpromotedStageLoader<Layout, kNumTMAMulticast, kIsMulticastOnA, Tma2dOperands<Layout, SHAPE_N, kKind>>;
    using Wgmma = Int8Wgmma<Layout>;
    static_assert(kOut != Int8Out::Int32 || (kBias == Int8Bias::None && !kHasAzp),
                  "the raw s32 output takes no scales, bias or zero points");

    // Declared for the whole kernel rather than per tile: the WGMMAs read their accumulators even
    // where they overwrite them, so arrays that live across tiles keep the register allocation the
    // kernel was tuned on; per-tile arrays spilled on the widest tiles.
    int32_t accum[Layout::kNumWaves][Wgmma::kNumAccum];
    float out[Layout::kNumWaves][Wgmma::kNumAccum];
    unpromoted_gemm<Layout, StageLoader, SHAPE_N, kKind, kNumTMAMulticast, kIsMulticastOnA, kLoadBatch, 1>(
        shape_m, num_groups, grouped_layout, tmap_a, tmap_b, tmap_d,
        [&](auto& consumer, const Tile& tile, const uint32_t (&num_valid_rows)[Layout::kNumWaves]) {
            Wgmma wgmma{accum};
            consumer.mma_k_blocks(wgmma, num_valid_rows);

            const Int8EpilogueArgs epilogue_args{sa, sa_group_stride, sa_row_stride, sb, sb_group_stride,
                                                 sb_col_stride, bias, bias_group_stride, zp, zp_group_stride,
                                                 zp_row_stride, b_sums, b_sums_group_stride};
            // The scaled outputs replace the sums in place, as FP32 bits (computed into a second array,
            // the widest tiles ran out of registers and spilled); the raw s32 sums stay as they are. Then
            // every register is read as FP32 bits (a free move): the FP32 store path moves bits only, so
            // the raw sums reach D exactly.
            if constexpr (kOut != Int8Out::Int32) {
                #pragma unroll
                for (uint32_t w = 0; w < Layout::kNumWaves; ++w) {
                    const uint32_t row = tile.row + w * Layout::kWaveM + consumer.row_in_wave;
                    const uint32_t col = tile.n_block * BLOCK_N + consumer.lane % 4 * 2;
                    dequantize_in_place<kBias, kHasAzp>(accum[w], epilogue_args, tile.group, row, shape_m, col,
                                                        SHAPE_N);
                }
            }
            #pragma unroll
            for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < Wgmma::kNumAccum; ++i)
                    out[w][i] = __int_as_float(accum[w][i]);
            consumer.template store<kInt8StoreType<kOut>, kSwizzleDBytes, kNumDChunks, SHAPE_N>(
                tmap_d, tile, num_valid_rows, out, d, d_row_bytes, d_group_bytes);
        });
}

}  // namespace deepgemm

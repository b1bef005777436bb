#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_partial.cuh>
#include <deepgemm/impls/bf16/mma.cuh>
#include <deepgemm/impls/unpromoted/kernel.cuh>
#include <deepgemm/impls/unpromoted/layout.cuh>
#include <deepgemm/impls/unpromoted/loader.cuh>

// D[M, N] = C[M, N] + A * B with BF16 or FP16 operands and FP32 accumulation in the tensor cores.
// A is [M, K] (K-major) or stored [K, M] (M-major), B is [N, K] (K-major) or stored [K, N]
// (N-major): 16-bit WGMMA reads either from shared memory, so every layout runs without copies.
//
// The pipeline is the skeleton of the kernels without a promotion step (impls/unpromoted/kernel.cuh,
// the FP8 kernel's pipeline): the accumulators stay in the tensor cores' hands across k-blocks. The
// grouped kinds (K-major A and B only) are the FP8 kernel's, minus the scales.
//
// Split-K (kSplitK > 1) is the FP8 kernel's: K slices of whole k-blocks as work units, FP32 partial
// tiles into the workspace `d` points at, summed (and C added) by impls/sm90_split_k_reduce.cuh; the
// split kernel itself adds no C.
namespace deepgemm {

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          bool kIsAMNMajor, bool kIsBMNMajor, OutType kOutType, uint32_t kNumDChunks, GemmKind kKind>
struct Bf16GemmLayout
    : UnpromotedLayout<BLOCK_M, BLOCK_N, 64, 2, kNumStages, kOutType == OutType::FP32 ? 4u : 2u, kNumDChunks,
                       KindTraits<kKind>::kHandsOffTiles, kIsAMNMajor, kIsBMNMajor> {
    // 64 16-bit elements: one 128-byte swizzle line of K, or 64 lines of an MN-major chunk.
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, 64u);

    static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "WGMMA N is a multiple of 8 up to 256");
    static_assert(!KindTraits<kKind>::kIsGrouped || (!kIsAMNMajor && !kIsBMNMajor), "grouped GEMMs are NT only");
};

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, bool kIsAMNMajor, bool kIsBMNMajor, bool kIsFP16,
          OutType kOutType, bool kHasC, uint32_t kSwizzleDBytes, uint32_t kNumDChunks, uint32_t kLoadBatch,
          GemmKind kKind, uint32_t kSplitK>
__global__ void __launch_bounds__(
    (Bf16GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kIsAMNMajor, kIsBMNMajor, kOutType,
                    kNumDChunks, kKind>::kNumThreads), 1)
sm90_bf16_gemm(uint32_t shape_m, uint32_t num_groups, const int32_t* __restrict__ grouped_layout,
               const uint8_t* c, uint64_t c_row_bytes, uint8_t* d, uint64_t d_row_bytes, uint64_t d_group_bytes,
               const __grid_constant__ TmaDescriptor tmap_a, const __grid_constant__ TmaDescriptor tmap_b,
               const __grid_constant__ TmaDescriptor tmap_d) {
    using Layout = Bf16GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kIsAMNMajor, kIsBMNMajor,
                                  kOutType, kNumDChunks, kKind>;
    using StageLoader =
        UnpromotedStageLoader<Layout, kNumTMAMulticast, kIsMulticastOnA, Tma2dOperands<Layout, SHAPE_N, kKind>>;
    using Wgmma = Bf16Wgmma<Layout, kIsFP16>;
    static_assert(!KindTraits<kKind>::kIsGrouped || !kHasC, "only the dense GEMM adds C");
    static_assert(kSplitK == 1 || (kNumTMAMulticast == 1 && Layout::kNumKBlocks % kSplitK == 0 && !kHasC),
                  "split-K cuts K into slices of equal whole k-blocks, does not multicast, and leaves C to the "
                  "reduction");

    // For the whole kernel, as in the INT8 kernel (see there).
    float accum[Layout::kNumWaves][Wgmma::kNumAccum];
    unpromoted_gemm<Layout, StageLoader, SHAPE_N, kKind, kNumTMAMulticast, kIsMulticastOnA, kLoadBatch, kSplitK>(
        shape_m, num_groups, grouped_layout, tmap_a, tmap_b, tmap_d,
        [&](auto& consumer, const Tile& tile, const uint32_t (&num_valid_rows)[Layout::kNumWaves]) {
            Wgmma wgmma{accum};
            consumer.mma_k_blocks(wgmma, num_valid_rows);
            if constexpr (kHasC)
                consumer.template add_c<kOutType, SHAPE_N>(accum, c, c_row_bytes, tile, shape_m);
            // Epilogue, per warpgroup on its own rows of the D tile (split-K: of the slice's partial tile).
            if constexpr (kSplitK > 1) {
                store_partial<BLOCK_N, Layout::kNumWaves, Layout::kWaveM>(
                    accum, d, d_row_bytes, d_group_bytes, consumer.scheduler.split, tile, consumer.row_in_wave,
                    consumer.lane % 4, shape_m, SHAPE_N);
            } else {
                consumer.template store<kOutType, kSwizzleDBytes, kNumDChunks, SHAPE_N>(
                    tmap_d, tile, num_valid_rows, accum, d, d_row_bytes, d_group_bytes);
            }
        });
}

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/tf32/loader.cuh>
#include <deepgemm/impls/tf32/mma.cuh>
#include <deepgemm/impls/unpromoted/kernel.cuh>
#include <deepgemm/impls/unpromoted/layout.cuh>
#include <deepgemm/impls/unpromoted/loader.cuh>

// D[M, N] = C[M, N] + A * B^T with FP32 operands on the TF32 tensor cores (m64nNk8) and FP32
// accumulation, FP32 out. TF32 WGMMA reads K-major shared memory only (the instruction has no
// transpose immediates), so A is [M, K] and B [N, K], both K-major; the ops copy an MN-major operand
// into that layout first (impls/tf32/stage_operand.cuh).
//
// kNumTerms = 3 computes a 3xTF32 product: A and B arrive split into a TF32 high part and the low
// remainder ([rows, 2, K]), and the kernel sums lo*hi + hi*lo + hi*hi as three runs of k-blocks
// (Tf32Terms), promoting the tensor cores' sum into FP32 registers every kPromoteEvery k-blocks, from
// one accumulator set or from two used alternately so that the promotion overlaps the next WGMMAs
// (kPromoteSets; Tf32Wgmma, Tf32PromoteSchedule), which gives about FP32 accuracy from TF32 tensor cores.
//
// The pipeline is the 16-bit kernel's skeleton (impls/unpromoted/kernel.cuh), dense only; a k-block
// is one 128-byte line of K (32 FP32). TF32 runs the skeleton's k-loop; 3xTF32 runs its promotion
// schedule on the skeleton's steps (Tf32Wgmma::mma_k_blocks).
namespace deepgemm {

template <uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTerms,
          uint32_t kNumDChunks>
struct Tf32GemmLayout : UnpromotedLayout<BLOCK_M, BLOCK_N, 32, 4, kNumStages, 4, kNumDChunks, false> {
    // 32 FP32 elements: one 128-byte swizzle line of K; the terms of a 3xTF32 product run one after
    // another.
    static constexpr uint32_t kKBlocksPerTerm = ceil_div(SHAPE_K, 32u);
    static constexpr uint32_t kNumKBlocks = kNumTerms * kKBlocksPerTerm;

    static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "WGMMA N is a multiple of 8 up to 256");
};

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, uint32_t kNumTerms, bool kHasC, uint32_t kSwizzleDBytes,
          uint32_t kNumDChunks, uint32_t kLoadBatch, uint32_t kPromoteEvery, uint32_t kPromoteSets>
__global__ void __launch_bounds__(
    (Tf32GemmLayout<SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTerms, kNumDChunks>::kNumThreads), 1)
sm90_tf32_gemm(uint32_t shape_m, const uint8_t* c, uint64_t c_row_bytes, uint8_t* d, uint64_t d_row_bytes,
               const __grid_constant__ TmaDescriptor tmap_a, const __grid_constant__ TmaDescriptor tmap_b,
               const __grid_constant__ TmaDescriptor tmap_d) {
    using Layout = Tf32GemmLayout<SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTerms, kNumDChunks>;
    using StageLoader =
        UnpromotedStageLoader<Layout, kNumTMAMulticast, kIsMulticastOnA, Tf32SplitOperands<Layout, kNumTerms>>;
    // 3xTF32 adds the WGMMA sum of every kPromoteEvery k-blocks into FP32 registers (see Tf32Wgmma).
    static_assert(kNumTerms == 3 || (kPromoteEvery == 1 && kPromoteSets == 1),
                  "TF32 accumulates in the tensor cores: only 3xTF32 chooses a promotion schedule");
    constexpr uint32_t kWgmmaPromoteEvery = kNumTerms == 3 ? kPromoteEvery : 0;
    using Wgmma = Tf32Wgmma<Layout, kWgmmaPromoteEvery, kPromoteSets>;

    // For the whole kernel, as in the INT8 kernel (see there).
    float accum[kPromoteSets][Layout::kNumWaves][Wgmma::kNumAccum];
    // The promoted sum (3xTF32); unused, hence no registers, otherwise.
    float total[Layout::kNumWaves][Wgmma::kNumAccum];
    unpromoted_gemm<Layout, StageLoader, SHAPE_N, GemmKind::Dense, kNumTMAMulticast, kIsMulticastOnA, kLoadBatch, 1>(
        shape_m, 1, nullptr, tmap_a, tmap_b, tmap_d,
        [&](auto& consumer, const Tile& tile, const uint32_t (&num_valid_rows)[Layout::kNumWaves]) {
            Wgmma wgmma{accum, total};
            if constexpr (kWgmmaPromoteEvery > 0)
                wgmma.mma_k_blocks(consumer, num_valid_rows);
            else
                consumer.mma_k_blocks(wgmma, num_valid_rows);
            if constexpr (kHasC)
                consumer.template add_c<OutType::FP32, SHAPE_N>(wgmma.result(), c, c_row_bytes, tile, shape_m);
            consumer.template store<OutType::FP32, kSwizzleDBytes, kNumDChunks, SHAPE_N>(
                tmap_d, tile, num_valid_rows, wgmma.result(), d, d_row_bytes, 0);
        });
}

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_tile.cuh>
#include <deepgemm/impls/tf32/loader.cuh>
#include <deepgemm/impls/tf32/mma.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

// D[M, N] = C[M, N] + A * B^T with FP32 operands on the TF32 tensor cores (m64nNk8) and FP32
// accumulation, FP32 out. TF32 WGMMA reads K-major shared memory only (the instruction has no
// transpose immediates), so A is [M, K] and B [N, K], both K-major; the ops copy an MN-major operand
// into that layout first (impls/tf32/stage_operand.cuh).
//
// kNumTerms = 3 computes a 3xTF32 product: A and B arrive split into a TF32 high part and the low
// remainder ([rows, 2, K]), and the kernel sums lo*hi + hi*lo + hi*hi as three runs of k-blocks
// (Tf32Terms), promoting the tensor cores' sum into FP32 registers every kPromoteEvery k-blocks, from
// one accumulator set or from two used alternately so that the promotion overlaps the next WGMMAs
// (kPromoteSets; Tf32Mma, Tf32PromoteSchedule), which gives about FP32 accuracy from TF32 tensor cores.
//
// The pipeline is the 16-bit kernel's (sm90_bf16_gemm.cuh), dense only: a producer warpgroup streams
// A and B through a ring of shared-memory stages with TMA, one or two consumer warpgroups run
// WGMMAs, a persistent scheduler walks the tiles; a k-block is one 128-byte line of K (32 FP32).
namespace deepgemm {

template <uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTerms,
          uint32_t kNumDChunks>
struct Tf32GemmLayout {
    // 32 FP32 elements: one 128-byte swizzle line of K.
    static constexpr uint32_t BLOCK_K = 32;
    static constexpr uint32_t kNumMathWarpgroups = BLOCK_M == 64 ? 1 : 2;
    static constexpr uint32_t kNumMathThreads = 128 * kNumMathWarpgroups;
    static constexpr uint32_t kNumThreads = kNumMathThreads + 128;
    static constexpr uint32_t kWaveM = 64 * kNumMathWarpgroups;
    static constexpr uint32_t kNumWaves = BLOCK_M / kWaveM;
    static constexpr uint32_t kKBlocksPerTerm = ceil_div(SHAPE_K, BLOCK_K);
    static constexpr uint32_t kNumKBlocks = kNumTerms * kKBlocksPerTerm;

    // The FP32 D tile is staged in kNumDChunks column chunks (see store_tile).
    static constexpr uint32_t kSmemDBytes = align_up(BLOCK_M * BLOCK_N / kNumDChunks * 4u, 1024u);
    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K * 4;
    static constexpr uint32_t kSmemBBytes = BLOCK_N * BLOCK_K * 4;
    static constexpr uint32_t kSmemBytes = kSmemDBytes + kNumStages * (kSmemABytes + kSmemBBytes) + kNumStages * 2 * 8;

    static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "BLOCK_M is 64, 128 or 256");
    static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "WGMMA N is a multiple of 8 up to 256");
    static_assert(kSmemBBytes % 1024 == 0, "128B-swizzled tiles must stay 1024-byte aligned");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");
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
    constexpr GemmKind kKind = GemmKind::Dense;
    using Scheduler = TileScheduler<kKind, SHAPE_N, BLOCK_M, BLOCK_N, 16, kIsMulticastOnA || kNumTMAMulticast == 1>;
    using StageLoader = Tf32StageLoader<Layout, BLOCK_M, BLOCK_N, kNumTMAMulticast, kIsMulticastOnA, kNumTerms>;
    // 3xTF32 adds the WGMMA sum of every kPromoteEvery k-blocks into FP32 registers (see Tf32Mma).
    static_assert(kNumTerms == 3 || (kPromoteEvery == 1 && kPromoteSets == 1),
                  "TF32 accumulates in the tensor cores: only 3xTF32 chooses a promotion schedule");
    constexpr uint32_t kMmaPromoteEvery = kNumTerms == 3 ? kPromoteEvery : 0;
    using Mma = Tf32Mma<Layout, BLOCK_N, kNumStages, kNumTMAMulticast, kMmaPromoteEvery, kPromoteSets>;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = Mma::kNumAccum;
    constexpr uint32_t kWarpgroupBarrier = 1;

    // Shared memory: [D tile][A stages][B stages][full | empty barriers].
    extern __shared__ __align__(1024) uint8_t smem[];
    uint8_t* smem_d = smem;
    uint8_t* smem_a = smem_d + Layout::kSmemDBytes;
    uint8_t* smem_b = smem_a + kNumStages * Layout::kSmemABytes;
    uint64_t* full_barriers = reinterpret_cast<uint64_t*>(smem_b + kNumStages * Layout::kSmemBBytes);
    uint64_t* empty_barriers = full_barriers + kNumStages;

    const uint32_t thread = threadIdx.x;
    start_pipeline<Layout::kSmemBytes, kNumStages, kNumTMAMulticast, kNumMathThreads>(
        thread, full_barriers, empty_barriers, &tmap_a, &tmap_b, &tmap_d);

    if (thread >= kNumMathThreads) {
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            const uint32_t cta_rank = kNumTMAMulticast > 1 ? ptx::cluster_cta_rank() : 0;
            Scheduler scheduler(shape_m, 1, nullptr);
            StageLoader loader{tmap_a, tmap_b, smem_a, smem_b, cta_rank};
            produce_tiles<kKind, kNumStages, Layout::kNumKBlocks, kLoadBatch>(
                scheduler, full_barriers, empty_barriers, nullptr, Layout::kSmemABytes + Layout::kSmemBBytes,
                loader);
        }
        __syncwarp();
    } else {
        ptx::warpgroup_reg_alloc<Layout::kNumMathWarpgroups == 1 ? 248 : 232>();
        const uint32_t warpgroup = warp_uniform(thread / 128);
        const uint32_t thread_in_warpgroup = thread % 128;
        const uint32_t lane = thread % 32;
        const uint32_t row_in_wave = warpgroup * 64 + thread_in_warpgroup / 32 * 16 + lane / 4;

        float accum[kPromoteSets][Layout::kNumWaves][kNumAccum];
        // The promoted sum (3xTF32); unused, hence no registers, otherwise.
        float total[Layout::kNumWaves][kNumAccum];
        float (&result)[Layout::kNumWaves][kNumAccum] = kMmaPromoteEvery > 0 ? total : accum[0];
        // A warpgroup's 64 rows of A start 64 K lines (64 * 128 bytes) into the stage.
        const uint64_t desc_a_base = ptx::make_smem_desc_k_major_sw128(smem_a + warpgroup * 64 * 128);
        const uint64_t desc_b_base = ptx::make_smem_desc_k_major_sw128(smem_b);
        uint32_t stage = 0, phase = 0;
        Scheduler scheduler(shape_m, 1, nullptr);
        Tile tile;
        while (scheduler.next(tile)) {
            uint32_t num_valid_rows[Layout::kNumWaves];
            warpgroup_valid_rows<kKind, Layout::kNumWaves, Layout::kWaveM>(tile, warpgroup, num_valid_rows);

            Mma mainloop{full_barriers, empty_barriers, stage, phase, desc_a_base, desc_b_base, lane, accum, total};
            mainloop.k_loop();
            #pragma unroll
            for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    ptx::fence_operand(result[w][i]);

            if constexpr (kHasC) {
                #pragma unroll
                for (uint32_t w = 0; w < Layout::kNumWaves; ++w) {
                    const uint32_t row = tile.row + w * Layout::kWaveM + row_in_wave;
                    const uint32_t col = tile.n_block * BLOCK_N;
                    add_source<OutType::FP32>(result[w], c + col * 4, c_row_bytes, row, lane % 4, shape_m,
                                              SHAPE_N - col);
                }
            }

            // Epilogue, per warpgroup on its own rows of the D tile.
            store_tile<BLOCK_M, BLOCK_N, kNumDChunks, OutType::FP32, kSwizzleDBytes, kKind, Layout::kNumWaves,
                       Layout::kWaveM>(&tmap_d, smem_d, tile, num_valid_rows, result, warpgroup, thread_in_warpgroup,
                                       row_in_wave, kWarpgroupBarrier + warpgroup, d, d_row_bytes, 0, SHAPE_N);
        }
        if (thread_in_warpgroup == 0)
            ptx::tma_store_wait<0>();
    }

    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
}

}  // namespace deepgemm

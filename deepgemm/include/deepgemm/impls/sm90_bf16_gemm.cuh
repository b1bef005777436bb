#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_partial.cuh>
#include <deepgemm/epilogue/store_tile.cuh>
#include <deepgemm/impls/bf16/mma.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

// D[M, N] = C[M, N] + A * B with BF16 or FP16 operands and FP32 accumulation in the tensor cores.
// A is [M, K] (K-major) or stored [K, M] (M-major), B is [N, K] (K-major) or stored [K, N]
// (N-major): 16-bit WGMMA reads either from shared memory, so every layout runs without copies.
//
// The pipeline is the FP8 kernel's (sm90_fp8_gemm_1d2d.cuh): a producer warpgroup streams A and B
// through a ring of shared-memory stages with TMA, one or two consumer warpgroups run WGMMAs, a
// persistent scheduler walks the tiles. With no promotion step, the accumulators stay in the tensor
// cores' hands across k-blocks: each k-block's WGMMAs are issued while the previous k-block's still
// run, and a stage is freed once the WGMMAs after it were issued. The grouped kinds (K-major A and B
// only) are the FP8 kernel's, minus the scales.
//
// Split-K (kSplitK > 1) is the FP8 kernel's: K slices of whole k-blocks as work units, FP32 partial
// tiles into the workspace `d` points at, summed (and C added) by impls/sm90_split_k_reduce.cuh; the
// split kernel itself adds no C.
namespace deepgemm {

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          bool kIsAMNMajor, bool kIsBMNMajor, OutType kOutType, uint32_t kNumDChunks, GemmKind kKind>
struct Bf16GemmLayout {
    // 64 16-bit elements: one 128-byte swizzle line of K, or 64 lines of an MN-major chunk.
    static constexpr uint32_t BLOCK_K = 64;
    // MN-major tiles are loaded in 64-wide chunks (a swizzled TMA box spans at most 128 bytes).
    static constexpr uint32_t kChunk = 64;
    static constexpr uint32_t kChunkBytes = kChunk * BLOCK_K * 2;
    static constexpr uint32_t kNumMathWarpgroups = BLOCK_M == 64 ? 1 : 2;
    static constexpr uint32_t kNumMathThreads = 128 * kNumMathWarpgroups;
    static constexpr uint32_t kNumThreads = kNumMathThreads + 128;
    static constexpr uint32_t kWaveM = 64 * kNumMathWarpgroups;
    static constexpr uint32_t kNumWaves = BLOCK_M / kWaveM;
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, BLOCK_K);

    // The D tile is staged in kNumDChunks column chunks (see store_tile).
    static constexpr uint32_t kSmemDBytes =
        align_up(BLOCK_M * BLOCK_N / kNumDChunks * (kOutType == OutType::FP32 ? 4u : 2u), 1024u);
    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K * 2;
    static constexpr uint32_t kSmemBBytes = BLOCK_N * BLOCK_K * 2;
    static constexpr uint32_t kSmemTileBytes = KindTraits<kKind>::kHandsOffTiles ? kNumStages * sizeof(Tile) : 0;
    static constexpr uint32_t kSmemBytes =
        kSmemDBytes + kNumStages * (kSmemABytes + kSmemBBytes) + kNumStages * 2 * 8 + kSmemTileBytes;

    static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "BLOCK_M is 64, 128 or 256");
    static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "WGMMA N is a multiple of 8 up to 256");
    static_assert(!kIsBMNMajor || BLOCK_N % kChunk == 0, "an N-major B tile is whole 64-column chunks");
    static_assert(kSmemBBytes % 1024 == 0, "128B-swizzled tiles must stay 1024-byte aligned");
    static_assert(!KindTraits<kKind>::kIsGrouped || (!kIsAMNMajor && !kIsBMNMajor), "grouped GEMMs are NT only");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");
};

// Loads rows [row, row + kRows) of one k-block of an operand into a stage: a K-major operand is one
// box of 128-byte K lines; an MN-major one is kRows / 64 chunks, each a box of 64 MN-elements by
// BLOCK_K lines (coordinates are innermost first: (k, row) or (row, k)). With kMulticast the boxes
// land in every CTA of the cluster.
template <bool kIsMNMajor, uint32_t kRows, uint32_t BLOCK_K, bool kMulticast>
__device__ __forceinline__ void load_operand(const void* tmap, uint64_t* bar, uint8_t* dst, int32_t k, int32_t row,
                                             uint16_t cluster_mask) {
    if constexpr (kIsMNMajor) {
        #pragma unroll
        for (uint32_t chunk = 0; chunk < kRows / 64; ++chunk) {
            uint8_t* chunk_dst = dst + chunk * 64 * BLOCK_K * 2;
            if constexpr (kMulticast)
                ptx::tma_load_2d_multicast(tmap, bar, chunk_dst, row + chunk * 64, k, cluster_mask);
            else
                ptx::tma_load_2d(tmap, bar, chunk_dst, row + chunk * 64, k);
        }
    } else if constexpr (kMulticast) {
        ptx::tma_load_2d_multicast(tmap, bar, dst, k, row, cluster_mask);
    } else {
        ptx::tma_load_2d(tmap, bar, dst, k, row);
    }
}

// The producer's role: issues the loads of k-block `k_block` of `tile` into stage `stage`, both
// completing on its full barrier `bar`. With multicast, rank 0 loads the shared operand into both CTAs
// of the pair. As in the FP8 kernel, the roles refer to the kernel's own variables.
template <typename Layout, uint32_t SHAPE_N, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumTMAMulticast,
          bool kIsMulticastOnA, bool kIsAMNMajor, bool kIsBMNMajor, GemmKind kKind>
struct Bf16StageLoader {
    static constexpr uint16_t kClusterMask = (1u << kNumTMAMulticast) - 1;
    static constexpr bool kMulticastA = kNumTMAMulticast > 1 && kIsMulticastOnA;
    static constexpr bool kMulticastB = kNumTMAMulticast > 1 && !kIsMulticastOnA;

    const TmaDescriptor& tmap_a;
    const TmaDescriptor& tmap_b;
    uint8_t* const& smem_a;
    uint8_t* const& smem_b;
    const uint32_t& cta_rank;

    __device__ __forceinline__ void load_stage(const Tile& tile, uint32_t k_block, uint32_t stage, uint64_t* bar) {
        uint8_t* dst_a = smem_a + stage * Layout::kSmemABytes;
        uint8_t* dst_b = smem_b + stage * Layout::kSmemBBytes;
        const int32_t k = k_block * Layout::BLOCK_K, m = tile.row, n = tile.n_block * BLOCK_N;
        if constexpr (KindTraits<kKind>::kHasGroupDim)
            ptx::tma_load_3d(&tmap_a, bar, dst_a, k, m, tile.group);
        else if (!kMulticastA || cta_rank == 0)
            load_operand<kIsAMNMajor, BLOCK_M, Layout::BLOCK_K, kMulticastA>(&tmap_a, bar, dst_a, k, m, kClusterMask);
        // The experts' B matrices lie back to back: one [G * N, K] tensor map.
        if (!kMulticastB || cta_rank == 0)
            load_operand<kIsBMNMajor, BLOCK_N, Layout::BLOCK_K, kMulticastB>(&tmap_b, bar, dst_b, k,
                                                                             n + tile.group * SHAPE_N, kClusterMask);
    }
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
    using Traits = KindTraits<kKind>;
    using Scheduler =
        TileScheduler<kKind, SHAPE_N, BLOCK_M, BLOCK_N, 16, kIsMulticastOnA || kNumTMAMulticast == 1, kSplitK>;
    using ConsumerScheduler = TileScheduler<Traits::kConsumerSchedulerKind, SHAPE_N, BLOCK_M, BLOCK_N, 16,
                                            kIsMulticastOnA || kNumTMAMulticast == 1, kSplitK>;
    using StageLoader = Bf16StageLoader<Layout, SHAPE_N, BLOCK_M, BLOCK_N, kNumTMAMulticast, kIsMulticastOnA,
                                        kIsAMNMajor, kIsBMNMajor, kKind>;
    // K-blocks of one work unit: the whole K loop, or one slice of it (split-K).
    constexpr uint32_t kSliceKBlocks = Layout::kNumKBlocks / kSplitK;
    using Mma =
        Bf16Mma<Layout, BLOCK_N, kNumStages, kNumTMAMulticast, kIsFP16, kIsAMNMajor, kIsBMNMajor, kSliceKBlocks>;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = Mma::kNumAccum;
    constexpr uint32_t kWarpgroupBarrier = 1;
    // As in the FP8 kernel, a cluster pair shares its m-block, so contiguous A may be multicast.
    static_assert(Traits::allows_multicast(kNumTMAMulticast, kIsMulticastOnA),
                  "the grouped kinds multicast only contiguous A");
    static_assert(!Traits::kIsGrouped || !kHasC, "only the dense GEMM adds C");
    static_assert(kSplitK == 1 || (kNumTMAMulticast == 1 && Layout::kNumKBlocks % kSplitK == 0 && !kHasC),
                  "split-K cuts K into slices of equal whole k-blocks, does not multicast, and leaves C to the "
                  "reduction");

    // Shared memory: [D tile][A stages][B stages][full | empty barriers]
    // [tile per stage (kinds that hand off tiles)].
    extern __shared__ __align__(1024) uint8_t smem[];
    uint8_t* smem_d = smem;
    uint8_t* smem_a = smem_d + Layout::kSmemDBytes;
    uint8_t* smem_b = smem_a + kNumStages * Layout::kSmemABytes;
    uint64_t* full_barriers = reinterpret_cast<uint64_t*>(smem_b + kNumStages * Layout::kSmemBBytes);
    uint64_t* empty_barriers = full_barriers + kNumStages;
    Tile* stage_tiles = reinterpret_cast<Tile*>(empty_barriers + kNumStages);

    const uint32_t thread = threadIdx.x;
    if (thread == kNumMathThreads)
        Scheduler::prefetch_first_reads(shape_m, grouped_layout);
    start_pipeline<Layout::kSmemBytes, kNumStages, kNumTMAMulticast, kNumMathThreads>(
        thread, full_barriers, empty_barriers, &tmap_a, &tmap_b, &tmap_d);

    if (thread >= kNumMathThreads) {
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            const uint32_t cta_rank = kNumTMAMulticast > 1 ? ptx::cluster_cta_rank() : 0;
            Scheduler scheduler(shape_m, num_groups, grouped_layout);
            StageLoader loader{tmap_a, tmap_b, smem_a, smem_b, cta_rank};
            if constexpr (kSplitK == 1) {
                produce_tiles<kKind, kNumStages, Layout::kNumKBlocks, kLoadBatch>(
                    scheduler, full_barriers, empty_barriers, stage_tiles, Layout::kSmemABytes + Layout::kSmemBBytes,
                    loader);
            } else {
                KSliceLoader<StageLoader, Scheduler, kSliceKBlocks> slice_loader{loader, scheduler};
                produce_tiles<kKind, kNumStages, kSliceKBlocks, kLoadBatch>(
                    scheduler, full_barriers, empty_barriers, stage_tiles, Layout::kSmemABytes + Layout::kSmemBBytes,
                    slice_loader);
            }
        }
        __syncwarp();
    } else {
        ptx::warpgroup_reg_alloc<Layout::kNumMathWarpgroups == 1 ? 248 : 232>();
        const uint32_t warpgroup = warp_uniform(thread / 128);
        const uint32_t thread_in_warpgroup = thread % 128;
        const uint32_t lane = thread % 32;
        const uint32_t row_in_wave = warpgroup * 64 + thread_in_warpgroup / 32 * 16 + lane / 4;

        float accum[Layout::kNumWaves][kNumAccum];
        const uint64_t desc_a_base =
            kIsAMNMajor ? ptx::make_smem_desc_mn_major_sw128(smem_a + warpgroup * 64 * 128, Layout::kChunkBytes)
                        : ptx::make_smem_desc_k_major_sw128(smem_a + warpgroup * 64 * 128);
        const uint64_t desc_b_base = kIsBMNMajor ? ptx::make_smem_desc_mn_major_sw128(smem_b, Layout::kChunkBytes)
                                                 : ptx::make_smem_desc_k_major_sw128(smem_b);
        uint32_t stage = 0, phase = 0;
        ConsumerScheduler scheduler(shape_m, num_groups, grouped_layout);
        Tile tile;
        while (next_consumer_tile<kKind>(scheduler, tile, full_barriers, stage_tiles, stage, phase)) {
            uint32_t num_valid_rows[Layout::kNumWaves];
            warpgroup_valid_rows<kKind, Layout::kNumWaves, Layout::kWaveM>(tile, warpgroup, num_valid_rows);

            // MMA over every k-block; the guarded loop only for tiles whose last wave holds no valid row.
            Mma mainloop{full_barriers, empty_barriers, stage, phase, desc_a_base, desc_b_base, lane, accum};
            if (!Traits::kHasInvalidRows || num_valid_rows[Layout::kNumWaves - 1] > 0)
                mainloop.k_loop(false, num_valid_rows);
            else
                mainloop.k_loop(true, num_valid_rows);
            #pragma unroll
            for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    ptx::fence_operand(accum[w][i]);

            if constexpr (kHasC) {
                #pragma unroll
                for (uint32_t w = 0; w < Layout::kNumWaves; ++w) {
                    const uint32_t row = tile.row + w * Layout::kWaveM + row_in_wave;
                    const uint32_t col = tile.n_block * BLOCK_N;
                    const uint8_t* c_col = c + col * (kOutType == OutType::FP32 ? 4 : 2);
                    add_source<kOutType>(accum[w], c_col, c_row_bytes, row, lane % 4, shape_m, SHAPE_N - col);
                }
            }

            // Epilogue, per warpgroup on its own rows of the D tile (split-K: of the slice's partial tile).
            if constexpr (kSplitK > 1) {
                store_partial<BLOCK_N, Layout::kNumWaves, Layout::kWaveM>(accum, d, d_row_bytes, d_group_bytes,
                                                                          scheduler.split, tile, row_in_wave,
                                                                          lane % 4, shape_m, SHAPE_N);
            } else {
                store_tile<BLOCK_M, BLOCK_N, kNumDChunks, kOutType, kSwizzleDBytes, kKind, Layout::kNumWaves,
                           Layout::kWaveM>(&tmap_d, smem_d, tile, num_valid_rows, accum, warpgroup,
                                           thread_in_warpgroup, row_in_wave, kWarpgroupBarrier + warpgroup, d,
                                           d_row_bytes, d_group_bytes, SHAPE_N);
            }
        }
        if (thread_in_warpgroup == 0)
            ptx::tma_store_wait<0>();
    }

    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
}

}  // namespace deepgemm

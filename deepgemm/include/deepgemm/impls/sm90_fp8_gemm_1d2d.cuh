#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_partial.cuh>
#include <deepgemm/epilogue/store_tile.cuh>
#include <deepgemm/impls/fp8_1d2d/mma_promote.cuh>
#include <deepgemm/impls/fp8_1d2d/scales_b.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

// D[M, N] = A[M, K] * B[N, K]^T with DeepSeek-V3 fine-grained scaling: A carries one FP32 scale per
// row per 128 K ("1D"), B one per 128x128 block ("2D"). One persistent CTA per SM: a producer
// warpgroup streams A, B and the A scales through a ring of shared-memory stages with TMA; one or
// two consumer warpgroups run FP8 WGMMAs per 128-K block and promote each partial sum into FP32
// registers with the two scales (the tensor-core accumulator keeps only ~14 mantissa bits).
//
// The MoE grouped GEMMs are the same kernel with another GemmKind: the scheduler then also names
// each tile's expert (B is [G, N, K], read as one [G * N, K] matrix) and how many of its rows are
// valid. Warpgroups whose rows are all invalid skip their WGMMAs, and a tile whose valid rows end
// inside a 64-row store box is written with plain stores, so rows outside every group stay untouched.
//
// Split-K (kSplitK > 1, dense, no multicast): where the output tiles are too few to fill the GPU, each
// tile's K loop is cut into kSplitK slices of whole 128-K blocks (so each slice promotes per block as
// the whole loop does), each slice runs as a work unit of its own, and its FP32 partial tile goes to
// slice `split` of a workspace [kSplitK, M, N] that `d` then points at (`d_row_bytes` = N * 4,
// `d_group_bytes` = M * N * 4); impls/sm90_split_k_reduce.cuh then sums the slices in a fixed order into
// D, so results are the same bits run to run. kSplitK == 1 compiles the kernel as it was.
namespace deepgemm {

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, bool kIsFP32Out, uint32_t kSwizzleDBytes,
          uint32_t kNumDChunks, GemmKind kKind>
struct Fp8GemmLayout {
    static constexpr uint32_t BLOCK_K = 128;
    static constexpr uint32_t kNumMathWarpgroups = BLOCK_M == 64 ? 1 : 2;
    static constexpr uint32_t kNumMathThreads = 128 * kNumMathWarpgroups;
    static constexpr uint32_t kNumThreads = kNumMathThreads + 128;
    // Each consumer warpgroup owns 64 rows of a "wave"; BLOCK_M = 256 runs two waves per k-block.
    static constexpr uint32_t kWaveM = 64 * kNumMathWarpgroups;
    static constexpr uint32_t kNumWaves = BLOCK_M / kWaveM;
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, BLOCK_K);
    // The producer's bulk copy (masked kind) reads B scales whose rows are padded to 16 bytes.
    using ScalesB = TileScalesB<SHAPE_N, SHAPE_K, BLOCK_N, KindTraits<kKind>::kProducerLoadsScalesB>;
    // One consumer warpgroup with registers for a second accumulator set runs the two-set k-loop
    // (Fp8MmaPromote::two_set_k_loop), whose WGMMAs of one k-block overlap the promotion of the
    // previous one. With 128-row tiles the other warpgroup already fills that gap.
    static constexpr bool kTwoAccumSets = kNumMathWarpgroups == 1 && BLOCK_N <= 128;
    // K-blocks per straight-line span of that loop; each span ends by waiting for its last WGMMAs.
    static constexpr uint32_t kTwoSetSpan = 8;

    // The D tile is staged in kNumDChunks column chunks (see store_tile).
    static constexpr uint32_t kSmemDBytes =
        align_up(BLOCK_M * BLOCK_N / kNumDChunks * (kIsFP32Out ? 4u : 2u), 1024u);
    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K;
    static constexpr uint32_t kSmemBBytes = BLOCK_N * BLOCK_K;
    static constexpr uint32_t kSmemSFABytes = align_up(BLOCK_M * 4u, 128u);
    // A tile's B scales: one row of one per k-block, two rows when the tile straddles a 128-column
    // block (rows padded to 16 bytes in the masked kind, see TileScalesB).
    static constexpr uint32_t kNumScalesB = ScalesB::kNumScales;
    // Who copies them to shared memory (KindTraits::kProducerLoadsScalesB): the producer, with the
    // tile's first stage, into buffers taken in turn per tile; or each consumer warpgroup into its
    // own buffer as the tile starts. Per-tile buffers: enough that the producer, up to kNumStages
    // k-blocks ahead, never overwrites those of a tile the consumers are still in (they read a
    // k-block's scales until just after freeing its stage).
    static constexpr uint32_t kNumTileSFBBuffers = 1 + ceil_div(kNumStages, kNumKBlocks);
    // Sized for either use, and in every grouped kind for rows padded as the masked kind's are, so the
    // host's mirror of the layout need not know the kind beyond dense or grouped.
    static constexpr uint32_t kSFBBufferFloats =
        align_up(kNumKBlocks, KindTraits<kKind>::kIsGrouped ? 4u : 1u) * ScalesB::kNumRows;
    static_assert(kNumScalesB <= kSFBBufferFloats, "a tile's B scales fit their buffer");
    static constexpr uint32_t kSmemSFBBytes =
        align_up(max_of(kNumMathWarpgroups, kNumTileSFBBuffers) * kSFBBufferFloats * 4u, 8u);
    static constexpr uint32_t kSmemStageBytes = kSmemABytes + kSmemBBytes + kSmemSFABytes;
    // The tile slots of kinds that hand off tiles (pipeline/stages.cuh).
    static constexpr uint32_t kSmemTileBytes = KindTraits<kKind>::kHandsOffTiles ? kNumStages * sizeof(Tile) : 0;
    static constexpr uint32_t kSmemBytes = kSmemDBytes + kNumStages * kSmemStageBytes + kSmemSFBBytes +
                                           kNumStages * 2 * 8 + kSmemTileBytes;

    static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "BLOCK_M is 64, 128 or 256");
    static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "WGMMA N is a multiple of 8 up to 256");
    static_assert(kSmemBBytes % 1024 == 0, "128B-swizzled tiles must stay 1024-byte aligned");
    static_assert(kNumTMAMulticast == 1 || kNumTMAMulticast == 2, "clusters of 1 or 2 CTAs");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");

    // The B-scale buffer of the next tile where the producer copies them; the producer and the
    // consumers each count their tiles in `num_tiles`.
    __device__ __forceinline__ static float* next_tile_sfb(float* const& smem_sfb, uint32_t& num_tiles) {
        return smem_sfb + num_tiles++ % kNumTileSFBBuffers * kNumScalesB;
    }
};

// The producer's role: issues the loads of k-block `k_block` of `tile` into stage `stage`, all
// completing on its full barrier `bar`: the A tile and its scales, the B tile, and with a tile's
// first k-block its B scales where the producer copies them. Like the consumers' roles it refers to
// the kernel's own variables: holding copies of them changed ptxas' instruction order.
template <typename Layout, uint32_t SHAPE_N, uint32_t BLOCK_N, uint32_t kNumTMAMulticast, bool kIsMulticastOnA,
          GemmKind kKind>
struct Fp8StageLoader {
    using Traits = KindTraits<kKind>;
    static constexpr uint16_t kClusterMask = (1u << kNumTMAMulticast) - 1;
    // The B scales a tile's first stage also brings where the producer copies them (produce_tiles
    // arms the stage's barrier for them).
    static constexpr uint32_t kFirstStageExtraTxBytes =
        Traits::kProducerLoadsScalesB ? Layout::ScalesB::kProducerTxBytes : 0;

    const TmaDescriptor& tmap_a;
    const TmaDescriptor& tmap_b;
    const TmaDescriptor& tmap_sfa;
    const float* __restrict__ const& sfb;
    uint8_t* const& smem_a;
    uint8_t* const& smem_b;
    uint8_t* const& smem_sfa;
    float* const& smem_sfb;
    const uint32_t& cta_rank;
    // Tiles begun so far, which take the B-scale buffers in turn.
    uint32_t num_tiles = 0;

    __device__ __forceinline__ void load_stage(const Tile& tile, uint32_t k_block, uint32_t stage, uint64_t* bar) {
        uint8_t* dst_a = smem_a + stage * Layout::kSmemABytes;
        uint8_t* dst_b = smem_b + stage * Layout::kSmemBBytes;
        uint8_t* dst_sfa = smem_sfa + stage * Layout::kSmemSFABytes;
        // Compiled for the masked kind only: the bulk copy needs its padded rows.
        if constexpr (Traits::kProducerLoadsScalesB) {
            if (k_block == 0)
                Layout::ScalesB::load_by_producer(sfb, tile, Layout::next_tile_sfb(smem_sfb, num_tiles), bar);
        }
        const int32_t k = k_block * Layout::BLOCK_K, m = tile.row, n = tile.n_block * BLOCK_N, g = tile.group;
        // With a 2-CTA cluster both CTAs share one operand tile: rank 0 loads it into both.
        if constexpr (kNumTMAMulticast > 1 && kIsMulticastOnA) {
            if (cta_rank == 0) {
                ptx::tma_load_2d_multicast(&tmap_a, bar, dst_a, k, m, kClusterMask);
                ptx::tma_load_2d_multicast(&tmap_sfa, bar, dst_sfa, m, k_block, kClusterMask);
            }
        } else if constexpr (Traits::kHasGroupDim) {
            ptx::tma_load_3d(&tmap_a, bar, dst_a, k, m, g);
            ptx::tma_load_3d(&tmap_sfa, bar, dst_sfa, m, k_block, g);
        } else {
            ptx::tma_load_2d(&tmap_a, bar, dst_a, k, m);
            ptx::tma_load_2d(&tmap_sfa, bar, dst_sfa, m, k_block);
        }
        if constexpr (kNumTMAMulticast > 1 && !kIsMulticastOnA) {
            if (cta_rank == 0)
                ptx::tma_load_2d_multicast(&tmap_b, bar, dst_b, k, n, kClusterMask);
        } else if constexpr (Traits::kIsGrouped) {
            // The experts' B matrices lie back to back: one [G * N, K] tensor map.
            ptx::tma_load_2d(&tmap_b, bar, dst_b, k, n + g * SHAPE_N);
        } else {
            ptx::tma_load_2d(&tmap_b, bar, dst_b, k, n);
        }
    }
};

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, bool kIsFP32Out, uint32_t kSwizzleDBytes,
          uint32_t kNumDChunks, uint32_t kLoadBatch, GemmKind kKind, uint32_t kSplitK>
__global__ void __launch_bounds__(
    (Fp8GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTMAMulticast, kIsMulticastOnA,
                   kIsFP32Out, kSwizzleDBytes, kNumDChunks, kKind>::kNumThreads), 1)
sm90_fp8_gemm_1d2d(uint32_t shape_m, uint32_t num_groups, const int32_t* __restrict__ grouped_layout,
                   const float* __restrict__ sfb, uint8_t* d, uint64_t d_row_bytes, uint64_t d_group_bytes,
                   const __grid_constant__ TmaDescriptor tmap_a, const __grid_constant__ TmaDescriptor tmap_b,
                   const __grid_constant__ TmaDescriptor tmap_sfa, const __grid_constant__ TmaDescriptor tmap_d) {
    using Layout = Fp8GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTMAMulticast,
                                 kIsMulticastOnA, kIsFP32Out, kSwizzleDBytes, kNumDChunks, kKind>;
    using Traits = KindTraits<kKind>;
    using Scheduler =
        TileScheduler<kKind, SHAPE_N, BLOCK_M, BLOCK_N, 16, kIsMulticastOnA || kNumTMAMulticast == 1, kSplitK>;
    using ConsumerScheduler = TileScheduler<Traits::kConsumerSchedulerKind, SHAPE_N, BLOCK_M, BLOCK_N, 16,
                                            kIsMulticastOnA || kNumTMAMulticast == 1, kSplitK>;
    using StageLoader = Fp8StageLoader<Layout, SHAPE_N, BLOCK_N, kNumTMAMulticast, kIsMulticastOnA, kKind>;
    // K-blocks of one work unit: the whole K loop, or one slice of it (split-K).
    constexpr uint32_t kSliceKBlocks = Layout::kNumKBlocks / kSplitK;
    using MmaPromote = Fp8MmaPromote<Layout, BLOCK_N, kNumStages, kNumTMAMulticast, kSliceKBlocks>;
    constexpr OutType kOutType = kIsFP32Out ? OutType::FP32 : OutType::BF16;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = MmaPromote::kNumAccum;
    // Hardware barrier 0 is __syncthreads; consumer warpgroup g synchronises within itself on 1 + g.
    constexpr uint32_t kWarpgroupBarrier = 1;
    static_assert(Traits::allows_multicast(kNumTMAMulticast, kIsMulticastOnA),
                  "the grouped kinds multicast only contiguous A");
    static_assert(kSplitK == 1 || (kNumTMAMulticast == 1 && Layout::kNumKBlocks % kSplitK == 0),
                  "split-K cuts K into slices of equal whole k-blocks and does not multicast");

    // Shared memory: [D tile][A stages][B stages][A-scale stages][B scales][full | empty barriers]
    // [tile per stage (kinds that hand off tiles)].
    // 128B-swizzled tiles need 1024-byte alignment, which every block size keeps.
    extern __shared__ __align__(1024) uint8_t smem[];
    uint8_t* smem_d = smem;
    uint8_t* smem_a = smem_d + Layout::kSmemDBytes;
    uint8_t* smem_b = smem_a + kNumStages * Layout::kSmemABytes;
    uint8_t* smem_sfa = smem_b + kNumStages * Layout::kSmemBBytes;
    float* smem_sfb = reinterpret_cast<float*>(smem_sfa + kNumStages * Layout::kSmemSFABytes);
    uint64_t* full_barriers = reinterpret_cast<uint64_t*>(reinterpret_cast<uint8_t*>(smem_sfb) + Layout::kSmemSFBBytes);
    uint64_t* empty_barriers = full_barriers + kNumStages;
    Tile* stage_tiles = reinterpret_cast<Tile*>(empty_barriers + kNumStages);

    const uint32_t thread = threadIdx.x;
    if (thread == kNumMathThreads)
        Scheduler::prefetch_first_reads(shape_m, grouped_layout);
    start_pipeline<Layout::kSmemBytes, kNumStages, kNumTMAMulticast, kNumMathThreads>(
        thread, full_barriers, empty_barriers, &tmap_a, &tmap_b, &tmap_sfa, &tmap_d);

    if (thread >= kNumMathThreads) {
        // Producer warpgroup: one thread issues every TMA load; the others only give up registers.
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            constexpr uint32_t kStageTxBytes = Layout::kSmemABytes + Layout::kSmemBBytes + BLOCK_M * 4;
            const uint32_t cta_rank = kNumTMAMulticast > 1 ? ptx::cluster_cta_rank() : 0;
            Scheduler scheduler(shape_m, num_groups, grouped_layout);
            StageLoader loader{tmap_a, tmap_b, tmap_sfa, sfb, smem_a, smem_b, smem_sfa, smem_sfb, cta_rank};
            if constexpr (kSplitK == 1) {
                produce_tiles<kKind, kNumStages, Layout::kNumKBlocks, kLoadBatch>(
                    scheduler, full_barriers, empty_barriers, stage_tiles, kStageTxBytes, loader);
            } else {
                KSliceLoader<StageLoader, Scheduler, kSliceKBlocks> slice_loader{loader, scheduler};
                produce_tiles<kKind, kNumStages, kSliceKBlocks, kLoadBatch>(
                    scheduler, full_barriers, empty_barriers, stage_tiles, kStageTxBytes, slice_loader);
            }
        }
        __syncwarp();
    } else {
        // Consumer warpgroups: WGMMA per 128-K block, then promotion into FP32 registers.
        ptx::warpgroup_reg_alloc<Layout::kNumMathWarpgroups == 1 ? 248 : 232>();
        // Broadcast from lane 0 so the compiler knows the index is warp-uniform and keeps the
        // descriptors derived from it in uniform registers.
        const uint32_t warpgroup = warp_uniform(thread / 128);
        const uint32_t lane = thread % 32;
        // First of the two accumulator rows this thread holds within a wave (the other is +8).
        const uint32_t row_in_wave = warpgroup * 64 + (thread % 128) / 32 * 16 + lane / 4;

        float accum[kNumAccum];
        float final_accum[Layout::kNumWaves][kNumAccum];
        // Everything per stage is a base plus stage times a stride, computed once here: the
        // k-loop then spends its issue slots on WGMMA and promotion, not on address arithmetic.
        // Descriptors advance in 16-byte units; every tile stays inside the 256 KB window.
        const uint64_t desc_a_base = ptx::make_smem_desc_k_major_sw128(smem_a + warpgroup * 64 * Layout::BLOCK_K);
        const uint64_t desc_b_base = ptx::make_smem_desc_k_major_sw128(smem_b);
        const float* sfa_base = reinterpret_cast<const float*>(smem_sfa) + row_in_wave;
        uint32_t stage = 0, phase = 0, num_tiles = 0;
        ConsumerScheduler scheduler(shape_m, num_groups, grouped_layout);
        Tile tile;
        while (next_consumer_tile<kKind>(scheduler, tile, full_barriers, stage_tiles, stage, phase)) {
            // The tile's B scales: the producer's copy, readable once the tile's first stage has
            // landed; or this warpgroup's own.
            const float* tile_sfb;
            if constexpr (Traits::kProducerLoadsScalesB)
                tile_sfb = Layout::next_tile_sfb(smem_sfb, num_tiles);
            else
                tile_sfb =
                    Layout::ScalesB::load_by_warpgroup(sfb, tile, smem_sfb, warpgroup, thread, kWarpgroupBarrier);
            // A K slice's k-blocks count from its first: so do its B scales.
            if constexpr (kSplitK > 1)
                tile_sfb += scheduler.split * kSliceKBlocks;
            uint32_t num_valid_rows[Layout::kNumWaves];
            warpgroup_valid_rows<kKind, Layout::kNumWaves, Layout::kWaveM>(tile, warpgroup, num_valid_rows);
            // Column groups of 8 before the next 128-column scale block use the first B scale.
            const uint32_t num_former_groups = min_of(BLOCK_N, 128 - tile.n_block * BLOCK_N % 128) / 8;

            #pragma unroll
            for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    final_accum[w][i] = 0.0f;

            // MMA and promotion over every k-block; the guarded loop only for tiles whose last wave
            // holds no valid row.
            MmaPromote mainloop{full_barriers, empty_barriers, stage, phase, desc_a_base, desc_b_base, sfa_base,
                                lane, tile_sfb, num_former_groups, accum, final_accum};
            if (!Traits::kHasInvalidRows || num_valid_rows[Layout::kNumWaves - 1] > 0) {
                if constexpr (Layout::kTwoAccumSets)
                    mainloop.two_set_k_loop();
                else
                    mainloop.k_loop(false, num_valid_rows);
            } else {
                mainloop.k_loop(true, num_valid_rows);
            }

            // Epilogue, per warpgroup on its own rows of the D tile (split-K: of the slice's partial tile).
            if constexpr (kSplitK > 1) {
                store_partial<BLOCK_N, Layout::kNumWaves, Layout::kWaveM>(final_accum, d, d_row_bytes, d_group_bytes,
                                                                          scheduler.split, tile, row_in_wave,
                                                                          lane % 4, shape_m, SHAPE_N);
            } else {
                store_tile<BLOCK_M, BLOCK_N, kNumDChunks, kOutType, kSwizzleDBytes, kKind,
                           Layout::kNumWaves, Layout::kWaveM>(&tmap_d, smem_d, tile, num_valid_rows, final_accum,
                                                              warpgroup, thread % 128, row_in_wave,
                                                              kWarpgroupBarrier + warpgroup, d, d_row_bytes,
                                                              d_group_bytes, SHAPE_N);
            }
        }
        if (thread % 128 == 0)
            ptx::tma_store_wait<0>();
    }

    // A CTA's barriers and shared memory must outlive its peer's remote arrivals and multicasts.
    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
}

}  // namespace deepgemm

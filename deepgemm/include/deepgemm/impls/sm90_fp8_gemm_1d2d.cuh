#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/promotion.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_tile.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/smem.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_fp8.cuh>
#include <deepgemm/scheduler/tile_pipeline.cuh>
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
    static constexpr uint32_t kNumScaleBlocksN = ceil_div(SHAPE_N, 128u);
    // A tile never straddles a 128-column scale block when BLOCK_N divides 128.
    static constexpr bool kUniformScaleB = 128 % BLOCK_N == 0;
    // One consumer warpgroup with registers for a second accumulator set runs the two-set k-loop
    // (see the kernel), whose WGMMAs of one k-block overlap the promotion of the previous one. (H200,
    // M <= 128 DeepSeek-V3 shapes: 64-row tiles 0-5% faster, 2.3% on average; 128-row tiles, where
    // the other warpgroup already fills that gap, -2 to +1%, within the noise.)
    static constexpr bool kTwoAccumSets = kNumMathWarpgroups == 1 && BLOCK_N <= 128;
    // K-blocks per straight-line span of that loop; each span ends by waiting for its last WGMMAs.
    static constexpr uint32_t kTwoSetSpan = 8;

    // The D tile is staged in kNumDChunks column chunks (see store_tile).
    static constexpr uint32_t kSmemDBytes =
        align_up(BLOCK_M * BLOCK_N / kNumDChunks * (kIsFP32Out ? 4u : 2u), 1024u);
    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K;
    static constexpr uint32_t kSmemBBytes = BLOCK_N * BLOCK_K;
    static constexpr uint32_t kSmemSFABytes = align_up(BLOCK_M * 4u, 128u);
    // A tile's B scales: one per k-block, two when the tile straddles a 128-column block.
    static constexpr uint32_t kNumScalesB = kNumKBlocks * (kUniformScaleB ? 1u : 2u);
    // Who copies them to shared memory: for the masked kind the producer, with the tile's first
    // stage (see load_tile_scales), into buffers taken in turn per tile; for the other kinds each
    // consumer warpgroup into its own buffer as the tile starts. (H200: the producer's copy made
    // masked calls up to 4.5% faster, but contiguous 128x192 tiles 1.5-3.5% slower.)
    static constexpr bool kProducerLoadsScalesB = kKind == GemmKind::Masked;
    // Per-tile buffers: enough that the producer, up to kNumStages k-blocks ahead, never overwrites
    // those of a tile the consumers are still in (they read a k-block's scales until just after
    // freeing its stage).
    static constexpr uint32_t kNumTileSFBBuffers = 1 + ceil_div(kNumStages, kNumKBlocks);
    // Sized for either use, so the host's mirror of the layout need not know the kind.
    static constexpr uint32_t kSmemSFBBytes =
        align_up(max_of(kNumMathWarpgroups, kNumTileSFBBuffers) * kNumScalesB * 4u, 8u);
    static constexpr uint32_t kSmemStageBytes = kSmemABytes + kSmemBBytes + kSmemSFABytes;
    // The grouped kinds' tile slots (scheduler/tile_pipeline.cuh).
    static constexpr uint32_t kSmemTileBytes = kHandsOffTiles<kKind> ? kNumStages * sizeof(Tile) : 0;
    static constexpr uint32_t kSmemBytes = kSmemDBytes + kNumStages * kSmemStageBytes + kSmemSFBBytes +
                                           kNumStages * 2 * 8 + kSmemTileBytes;

    static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "BLOCK_M is 64, 128 or 256");
    static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "WGMMA N is a multiple of 8 up to 256");
    static_assert(kSmemBBytes % 1024 == 0, "128B-swizzled tiles must stay 1024-byte aligned");
    static_assert(kNumTMAMulticast == 1 || kNumTMAMulticast == 2, "clusters of 1 or 2 CTAs");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");
};

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, bool kIsFP32Out, uint32_t kSwizzleDBytes,
          uint32_t kNumDChunks, uint32_t kLoadBatch, GemmKind kKind>
__global__ void __launch_bounds__(
    (Fp8GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTMAMulticast, kIsMulticastOnA,
                   kIsFP32Out, kSwizzleDBytes, kNumDChunks, kKind>::kNumThreads), 1)
sm90_fp8_gemm_1d2d(uint32_t shape_m, uint32_t num_groups, const int32_t* __restrict__ grouped_layout,
                   const float* __restrict__ sfb, uint8_t* d, uint64_t d_row_bytes, uint64_t d_group_bytes,
                   const __grid_constant__ TmaDescriptor tmap_a, const __grid_constant__ TmaDescriptor tmap_b,
                   const __grid_constant__ TmaDescriptor tmap_sfa, const __grid_constant__ TmaDescriptor tmap_d) {
    using Layout = Fp8GemmLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTMAMulticast,
                                 kIsMulticastOnA, kIsFP32Out, kSwizzleDBytes, kNumDChunks, kKind>;
    using Scheduler = TileScheduler<kKind, SHAPE_N, BLOCK_M, BLOCK_N, 16, kIsMulticastOnA || kNumTMAMulticast == 1>;
    // The consumers schedule only the dense kind themselves; the others take tiles from the producer.
    using ConsumerScheduler = TileScheduler<kHandsOffTiles<kKind> ? GemmKind::Dense : kKind, SHAPE_N, BLOCK_M,
                                            BLOCK_N, 16, kIsMulticastOnA || kNumTMAMulticast == 1>;
    using MMA = ptx::WgmmaFP8<BLOCK_N>;
    constexpr OutType kOutType = kIsFP32Out ? OutType::FP32 : OutType::BF16;
    constexpr uint32_t BLOCK_K = Layout::BLOCK_K;
    constexpr uint32_t kNumKBlocks = Layout::kNumKBlocks;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // Hardware barrier 0 is __syncthreads; consumer warpgroup g synchronises within itself on 1 + g.
    constexpr uint32_t kWarpgroupBarrier = 1;
    // Masked A, its scales and D are [G, rows, ...] tensor maps; every grouped kind reads B as [G * N, K].
    constexpr bool kIsMasked = kKind == GemmKind::Masked;
    constexpr bool kIsGroupedB = kKind != GemmKind::Dense;
    // A cluster pair shares its m-block, hence its expert, in the contiguous kinds too: both CTAs
    // read the same A rows (tile_scheduler.cuh); each loads its own B tile.
    static_assert(kKind == GemmKind::Dense || kNumTMAMulticast == 1 ||
                  (kIsMulticastOnA && kKind != GemmKind::Masked), "the grouped kinds multicast only contiguous A");

    // Shared memory: [D tile][A stages][B stages][A-scale stages][B scales][full | empty barriers]
    // [tile per stage (grouped kinds)].
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

    // The B scales of `tile`: those of its 128-column block for every k-block, then those of the
    // next block (the same for the last one).
    auto scale_b_rows = [&](const Tile& tile, const float* (&rows)[2]) {
        const uint32_t scale_row = tile.n_block * BLOCK_N / 128;
        const float* group_scales = sfb + tile.group * (Layout::kNumScaleBlocksN * kNumKBlocks);
        rows[0] = group_scales + scale_row * kNumKBlocks;
        rows[1] = group_scales + min_of(scale_row + 1, Layout::kNumScaleBlocksN - 1) * kNumKBlocks;
    };
    // Layout::kProducerLoadsScalesB: the producer copies the B scales of `tile` into `dst` along with
    // the tile's first stage, so the consumers find them in shared memory once that stage landed
    // (loaded by the consumers once they knew the tile, their latency came on top of the stage's:
    // about a microsecond with the tensor cores idle, at the start of every masked tile). Called
    // before the stage's TMA loads: the transaction bytes still pending keep `bar`'s phase from
    // completing before it returns.
    auto load_tile_scales = [&](const Tile& tile, float* dst, uint64_t* bar) {
        const float* rows[2];
        scale_b_rows(tile, rows);
        constexpr uint32_t kNumRows = Layout::kUniformScaleB ? 1 : 2;
        constexpr uint32_t kRowBytes = kNumKBlocks * sizeof(float);
        // One bulk copy per row, through the TMA unit like the stage's own loads, where rows are
        // 16-byte aligned; else a 4-byte cp.async per scale, tracked by the barrier.
        if (kRowBytes % 16 == 0 && reinterpret_cast<uint64_t>(sfb) % 16 == 0) {
            ptx::mbarrier_expect_tx(bar, kNumRows * kRowBytes);
            for (uint32_t r = 0; r < kNumRows; ++r)
                ptx::bulk_load(bar, dst + r * kNumKBlocks, rows[r], kRowBytes);
        } else {
            for (uint32_t r = 0; r < kNumRows; ++r)
                for (uint32_t i = 0; i < kNumKBlocks; ++i)
                    ptx::cp_async_4(dst + r * kNumKBlocks + i, rows[r] + i);
            ptx::cp_async_arrive_on(bar);
        }
    };

    const uint32_t thread = threadIdx.x;
    if (thread == kNumMathThreads)
        Scheduler::prefetch_first_reads(shape_m, grouped_layout);
    start_pipeline<Layout::kSmemBytes, kNumStages, kNumTMAMulticast, kNumMathThreads>(
        thread, full_barriers, empty_barriers, &tmap_a, &tmap_b, &tmap_sfa, &tmap_d);

    if (thread >= kNumMathThreads) {
        // Producer warpgroup: one thread issues every TMA load; the others only give up registers.
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            const uint32_t cta_rank = kNumTMAMulticast > 1 ? ptx::cluster_cta_rank() : 0;
            constexpr uint32_t kStageTxBytes = Layout::kSmemABytes + Layout::kSmemBBytes + BLOCK_M * 4;
            constexpr uint16_t kClusterMask = (1u << kNumTMAMulticast) - 1;
            Scheduler scheduler(shape_m, num_groups, grouped_layout);
            uint32_t num_tiles = 0;
            produce_tiles<kKind, kNumStages, kNumKBlocks, kLoadBatch>(
                scheduler, full_barriers, empty_barriers, stage_tiles, kStageTxBytes,
                [&](const Tile& tile, uint32_t k_block, uint32_t stage, uint64_t* bar) {
                    uint8_t* dst_a = smem_a + stage * Layout::kSmemABytes;
                    uint8_t* dst_b = smem_b + stage * Layout::kSmemBBytes;
                    uint8_t* dst_sfa = smem_sfa + stage * Layout::kSmemSFABytes;
                    if (Layout::kProducerLoadsScalesB && k_block == 0)
                        load_tile_scales(tile, smem_sfb + num_tiles++ % Layout::kNumTileSFBBuffers * Layout::kNumScalesB,
                                         bar);
                    const int32_t k = k_block * BLOCK_K, m = tile.row, n = tile.n_block * BLOCK_N, g = tile.group;
                    // With a 2-CTA cluster both CTAs share one operand tile: rank 0 loads it into both.
                    if constexpr (kNumTMAMulticast > 1 && kIsMulticastOnA) {
                        if (cta_rank == 0) {
                            ptx::tma_load_2d_multicast(&tmap_a, bar, dst_a, k, m, kClusterMask);
                            ptx::tma_load_2d_multicast(&tmap_sfa, bar, dst_sfa, m, k_block, kClusterMask);
                        }
                    } else if constexpr (kIsMasked) {
                        ptx::tma_load_3d(&tmap_a, bar, dst_a, k, m, g);
                        ptx::tma_load_3d(&tmap_sfa, bar, dst_sfa, m, k_block, g);
                    } else {
                        ptx::tma_load_2d(&tmap_a, bar, dst_a, k, m);
                        ptx::tma_load_2d(&tmap_sfa, bar, dst_sfa, m, k_block);
                    }
                    if constexpr (kNumTMAMulticast > 1 && !kIsMulticastOnA) {
                        if (cta_rank == 0)
                            ptx::tma_load_2d_multicast(&tmap_b, bar, dst_b, k, n, kClusterMask);
                    } else if constexpr (kIsGroupedB) {
                        // The experts' B matrices lie back to back: one [G * N, K] tensor map.
                        ptx::tma_load_2d(&tmap_b, bar, dst_b, k, n + g * SHAPE_N);
                    } else {
                        ptx::tma_load_2d(&tmap_b, bar, dst_b, k, n);
                    }
                });
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
        const uint64_t desc_a_base = ptx::make_smem_desc_k_major_sw128(smem_a + warpgroup * 64 * BLOCK_K);
        const uint64_t desc_b_base = ptx::make_smem_desc_k_major_sw128(smem_b);
        const float* sfa_base = reinterpret_cast<const float*>(smem_sfa) + row_in_wave;
        uint32_t stage = 0, phase = 0, num_tiles = 0;
        ConsumerScheduler scheduler(shape_m, num_groups, grouped_layout);
        Tile tile;
        while (next_consumer_tile<kKind>(scheduler, tile, full_barriers, stage_tiles, stage, phase)) {
            // The tile's B scales (of the next 128-column block from kNumKBlocks on): the producer's
            // copy, readable once the tile's first stage has landed; or this warpgroup's own.
            const float* tile_sfb;
            if constexpr (Layout::kProducerLoadsScalesB) {
                tile_sfb = smem_sfb + num_tiles++ % Layout::kNumTileSFBBuffers * Layout::kNumScalesB;
            } else {
                const float* rows[2];
                scale_b_rows(tile, rows);
                float* wg_sfb = smem_sfb + warpgroup * Layout::kNumScalesB;
                for (uint32_t i = thread % 128; i < kNumKBlocks; i += 128) {
                    wg_sfb[i] = __ldg(rows[0] + i);
                    if constexpr (!Layout::kUniformScaleB)
                        wg_sfb[kNumKBlocks + i] = __ldg(rows[1] + i);
                }
                ptx::named_barrier_sync(kWarpgroupBarrier + warpgroup, 128);
                tile_sfb = wg_sfb;
            }
            uint32_t num_valid_rows[Layout::kNumWaves];
            warpgroup_valid_rows<kKind, Layout::kNumWaves, Layout::kWaveM>(tile, warpgroup, num_valid_rows);
            // Column groups of 8 before the next 128-column scale block use the first B scale.
            const uint32_t num_former_groups = min_of(BLOCK_N, 128 - tile.n_block * BLOCK_N % 128) / 8;

            #pragma unroll
            for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    final_accum[w][i] = 0.0f;

            // The k-loop, compiled twice for the grouped kinds: tiles whose every wave has valid rows
            // (nearly all of them) run the dense kernel's loop; only the others test each wave's rows
            // (that test inside the loop cost the grouped kinds about 5% against the dense kernel).
            auto run_k_loop = [&](bool is_guarded) {
                for (uint32_t k_block = 0; k_block < kNumKBlocks; ++k_block) {
                    ptx::mbarrier_wait(&full_barriers[stage], phase);
                    const float scale_b0 = tile_sfb[k_block];
                    const float scale_b1 = Layout::kUniformScaleB ? scale_b0 : tile_sfb[kNumKBlocks + k_block];

                    const float* stage_sfa = sfa_base + stage * (Layout::kSmemSFABytes / 4);
                    const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
                    const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
                    #pragma unroll
                    for (uint32_t w = 0; w < Layout::kNumWaves; ++w) {
                        // Read the A scales before the stage can be released and overwritten.
                        const float scale_a0 = stage_sfa[w * Layout::kWaveM];
                        const float scale_a1 = stage_sfa[w * Layout::kWaveM + 8];
                        // Each 32-wide K step moves 32 bytes (2 descriptor units) along the swizzled row.
                        const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * BLOCK_K >> 4);
                        // Rows outside every group (padding, past masked_m) cost no tensor-core work.
                        const bool is_active = !is_guarded || num_valid_rows[w] > 0;

                        if (is_active) {
                            ptx::wgmma_fence();
                            #pragma unroll
                            for (uint32_t k = 0; k < BLOCK_K / 32; ++k)
                                MMA::mma(wave_desc_a + k * 2, desc_b + k * 2, accum, k > 0);
                            ptx::wgmma_commit_group();
                            ptx::wgmma_wait_group<0>();
                            #pragma unroll
                            for (uint32_t i = 0; i < kNumAccum; ++i)
                                ptx::fence_operand(accum[i]);
                        }

                        // Free the stage before promoting so the next TMA load overlaps the FFMAs.
                        if (w == Layout::kNumWaves - 1)
                            release_stage<kNumTMAMulticast>(&empty_barriers[stage], lane);

                        if (is_active)
                            promote_k_block<BLOCK_N>(num_former_groups, final_accum[w], accum, scale_a0, scale_a1,
                                                     scale_b0, scale_b1);
                    }
                    if (++stage == kNumStages)
                        stage = 0, phase ^= 1;
                }
            };
            // One consumer warpgroup (Layout::kTwoAccumSets): k-block k + 1's WGMMAs go into a second
            // accumulator set before k-block k is promoted, so the tensor cores need not idle through
            // the promotion and the WGMMA wait (with two warpgroups, the other one fills that gap).
            auto run_two_set_k_loop = [&]() {
                float accum_odd[kNumAccum];
                float scale_a[2][2];
                uint32_t issued_stage[2];
                // Waits for k-block `k_block`'s stage, reads its A scales and issues its WGMMAs.
                auto issue = [&](uint32_t k_block, float(&acc)[kNumAccum], uint32_t set) {
                    ptx::mbarrier_wait(&full_barriers[stage], phase);
                    const float* stage_sfa = sfa_base + stage * (Layout::kSmemSFABytes / 4);
                    scale_a[set][0] = stage_sfa[0];
                    scale_a[set][1] = stage_sfa[8];
                    const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
                    const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
                    ptx::wgmma_fence();
                    #pragma unroll
                    for (uint32_t k = 0; k < BLOCK_K / 32; ++k)
                        MMA::mma(desc_a + k * 2, desc_b + k * 2, acc, k > 0);
                    ptx::wgmma_commit_group();
                    issued_stage[set] = stage;
                    if (++stage == kNumStages)
                        stage = 0, phase ^= 1;
                };
                // Once k-block `k_block`'s WGMMAs completed: frees its stage and promotes its sum.
                auto finish = [&](uint32_t k_block, float(&acc)[kNumAccum], uint32_t set) {
                    #pragma unroll
                    for (uint32_t i = 0; i < kNumAccum; ++i)
                        ptx::fence_operand(acc[i]);
                    release_stage<kNumTMAMulticast>(&empty_barriers[issued_stage[set]], lane);
                    const float scale_b0 = tile_sfb[k_block];
                    const float scale_b1 = Layout::kUniformScaleB ? scale_b0 : tile_sfb[kNumKBlocks + k_block];
                    promote_k_block<BLOCK_N>(num_former_groups, final_accum[0], acc, scale_a[set][0], scale_a[set][1],
                                             scale_b0, scale_b1);
                };
                // Runs k-blocks [first, first + len), len a compile-time constant: even ones (counted
                // from `first`) accumulate in `accum`, odd ones in `accum_odd`. It starts and ends with
                // no WGMMA in flight: ptxas follows the two sets only through straight-line code (a
                // set in flight across a loop's back edge made it serialise every WGMMA).
                auto run_span = [&](uint32_t first, uint32_t len) {
                    issue(first, accum, 0);
                    #pragma unroll
                    for (uint32_t i = 0; i < len; i += 2) {
                        if (i + 1 < len) {
                            issue(first + i + 1, accum_odd, 1);
                            ptx::wgmma_wait_group<1>();
                        } else {
                            ptx::wgmma_wait_group<0>();
                        }
                        finish(first + i, accum, 0);
                        if (i + 1 == len)
                            break;
                        if (i + 2 < len) {
                            issue(first + i + 2, accum, 0);
                            ptx::wgmma_wait_group<1>();
                        } else {
                            ptx::wgmma_wait_group<0>();
                        }
                        finish(first + i + 1, accum_odd, 1);
                    }
                };
                constexpr uint32_t kSpan = Layout::kTwoSetSpan;
                uint32_t k_block = 0;
                for (; k_block + kSpan <= kNumKBlocks; k_block += kSpan)
                    run_span(k_block, kSpan);
                if constexpr (kNumKBlocks % kSpan != 0)
                    run_span(k_block, kNumKBlocks % kSpan);
            };
            if (kKind == GemmKind::Dense || num_valid_rows[Layout::kNumWaves - 1] > 0) {
                if constexpr (Layout::kTwoAccumSets)
                    run_two_set_k_loop();
                else
                    run_k_loop(false);
            } else {
                run_k_loop(true);
            }

            // Epilogue, per warpgroup on its own rows of the D tile.
            store_tile<BLOCK_M, BLOCK_N, kNumDChunks, kOutType, kSwizzleDBytes, kKind,
                       Layout::kNumWaves, Layout::kWaveM>(&tmap_d, smem_d, tile, num_valid_rows, final_accum,
                                                          warpgroup, thread % 128, row_in_wave,
                                                          kWarpgroupBarrier + warpgroup, d, d_row_bytes,
                                                          d_group_bytes, SHAPE_N);
        }
        if (thread % 128 == 0)
            ptx::tma_store_wait<0>();
    }

    // A CTA's barriers and shared memory must outlive its peer's remote arrivals and multicasts.
    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
}

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_tile.cuh>
#include <deepgemm/impls/fp8_1d1d/mma_promote.cuh>
#include <deepgemm/impls/fp8_1d1d/producer.cuh>
#include <deepgemm/impls/fp8_1d1d/scheduler.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/global.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>

// D[M, N] (+)= A[M, K] * B[N, K]^T with 1x128 scales on both operands ("1D1D"), the weight-gradient
// recipe: A and B each carry one FP32 scale per row per 128 K, so every promotion multiplies each
// accumulator element by its own row's A scale times its own column's B scale. One persistent CTA per
// SM: a producer warpgroup streams A, B and both operands' scales through a ring of shared-memory
// stages with TMA; one or two consumer warpgroups run FP8 WGMMAs per 128-K block and promote each
// partial sum into FP32 registers (the tensor-core accumulator keeps only ~14 mantissa bits).
//
// The k-grouped kind (MoE weight gradients) runs G such GEMMs over consecutive ranges of K (group g:
// ks[g] columns of A and B, read on the device) into D[G, M, N], stored through a 3-D tensor map.
// With kAccumulate the epilogue adds the tile to D by TMA reduce-add (D += A * B^T: C is D, or the
// host copied C into D first); otherwise it stores it, as FP32 or BF16.
namespace deepgemm {

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, bool kIsFP32Out, uint32_t kSwizzleDBytes,
          uint32_t kNumDChunks, bool kAccumulate, bool kIsKGrouped>
struct Fp8WgradLayout {
    static constexpr uint32_t BLOCK_K = 128;
    static constexpr uint32_t kNumMathWarpgroups = BLOCK_M == 64 ? 1 : 2;
    static constexpr uint32_t kNumMathThreads = 128 * kNumMathWarpgroups;
    static constexpr uint32_t kNumThreads = kNumMathThreads + 128;
    // Each consumer warpgroup owns 64 rows of a "wave"; BLOCK_M = 256 runs two waves per k-block.
    static constexpr uint32_t kWaveM = 64 * kNumMathWarpgroups;
    static constexpr uint32_t kNumWaves = BLOCK_M / kWaveM;

    // The D tile is staged in kNumDChunks column chunks (see store_tile).
    static constexpr uint32_t kSmemDBytes =
        align_up(BLOCK_M * BLOCK_N / kNumDChunks * (kIsFP32Out ? 4u : 2u), 1024u);
    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K;
    static constexpr uint32_t kSmemBBytes = BLOCK_N * BLOCK_K;
    // A stage's scales: one k-block's column of each operand's MN-major scales (TMA writes 128-byte
    // aligned boxes).
    static constexpr uint32_t kSmemSFABytes = align_up(BLOCK_M * 4u, 128u);
    static constexpr uint32_t kSmemSFBBytes = align_up(BLOCK_N * 4u, 128u);
    static constexpr uint32_t kSmemStageBytes = kSmemABytes + kSmemBBytes + kSmemSFABytes + kSmemSFBBytes;
    static constexpr uint32_t kStageTxBytes = kSmemABytes + kSmemBBytes + (BLOCK_M + BLOCK_N) * 4;
    // Full and empty barriers, and the tile slot, per stage.
    static constexpr uint32_t kSmemBytes =
        kSmemDBytes + kNumStages * (kSmemStageBytes + 2 * 8 + sizeof(WgradTile));

    static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "BLOCK_M is 64, 128 or 256");
    static_assert(BLOCK_N % 8 == 0 && BLOCK_N <= 256, "WGMMA N is a multiple of 8 up to 256");
    static_assert(kSmemBBytes % 1024 == 0, "128B-swizzled tiles must stay 1024-byte aligned");
    static_assert(kNumTMAMulticast == 1 || kNumTMAMulticast == 2, "clusters of 1 or 2 CTAs");
    static_assert(kIsFP32Out || !kAccumulate, "D is accumulated in FP32 only");
    static_assert(kIsKGrouped ? SHAPE_K == 0 : SHAPE_K % BLOCK_K == 0,
                  "dense K is whole 128-wide scale blocks; the k-grouped kind reads K from the device");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");
};

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          uint32_t kNumTMAMulticast, bool kIsMulticastOnA, bool kIsFP32Out, uint32_t kSwizzleDBytes,
          uint32_t kNumDChunks, bool kAccumulate, bool kIsKGrouped>
__global__ void __launch_bounds__(
    (Fp8WgradLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTMAMulticast, kIsMulticastOnA, kIsFP32Out,
                    kSwizzleDBytes, kNumDChunks, kAccumulate, kIsKGrouped>::kNumThreads), 1)
sm90_fp8_gemm_1d1d(uint32_t shape_m, uint32_t num_groups, const int32_t* __restrict__ ks, uint32_t total_k_blocks,
                   const __grid_constant__ TmaDescriptor tmap_a, const __grid_constant__ TmaDescriptor tmap_b,
                   const __grid_constant__ TmaDescriptor tmap_sfa, const __grid_constant__ TmaDescriptor tmap_sfb,
                   const __grid_constant__ TmaDescriptor tmap_d) {
    using Layout = Fp8WgradLayout<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kNumStages, kNumTMAMulticast, kIsMulticastOnA,
                                  kIsFP32Out, kSwizzleDBytes, kNumDChunks, kAccumulate, kIsKGrouped>;
    using Scheduler = WgradScheduler<SHAPE_N, SHAPE_K, BLOCK_M, BLOCK_N, kIsMulticastOnA || kNumTMAMulticast == 1,
                                     kIsKGrouped>;
    using StageLoader = WgradStageLoader<Layout, BLOCK_N, kNumTMAMulticast, kIsMulticastOnA>;
    using MmaPromote = WgradMmaPromote<Layout, BLOCK_N, kNumStages, kNumTMAMulticast>;
    constexpr OutType kOutType = kIsFP32Out ? OutType::FP32 : OutType::BF16;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = MmaPromote::kNumAccum;
    // The epilogue's store kind: the k-grouped D is [G, M, N], a 3-D map addressed by group, as the
    // masked kind's is; every row of a tile is valid (TMA clips the M tail within the group).
    constexpr GemmKind kStoreKind = kIsKGrouped ? GemmKind::Masked : GemmKind::Dense;
    // Hardware barrier 0 is __syncthreads; consumer warpgroup g synchronises within itself on 1 + g.
    constexpr uint32_t kWarpgroupBarrier = 1;

    // Shared memory: [D tile][A stages][B stages][A-scale stages][B-scale stages][full | empty barriers]
    // [tile per stage]. 128B-swizzled tiles need 1024-byte alignment, which every block size keeps.
    extern __shared__ __align__(1024) uint8_t smem[];
    uint8_t* smem_d = smem;
    uint8_t* smem_a = smem_d + Layout::kSmemDBytes;
    uint8_t* smem_b = smem_a + kNumStages * Layout::kSmemABytes;
    uint8_t* smem_sfa = smem_b + kNumStages * Layout::kSmemBBytes;
    uint8_t* smem_sfb = smem_sfa + kNumStages * Layout::kSmemSFABytes;
    uint64_t* full_barriers = reinterpret_cast<uint64_t*>(smem_sfb + kNumStages * Layout::kSmemSFBBytes);
    uint64_t* empty_barriers = full_barriers + kNumStages;
    WgradTile* stage_tiles = reinterpret_cast<WgradTile*>(empty_barriers + kNumStages);

    const uint32_t thread = threadIdx.x;
    if (kIsKGrouped && thread == kNumMathThreads)
        ptx::prefetch_l1(ks);
    start_pipeline<Layout::kSmemBytes, kNumStages, kNumTMAMulticast, kNumMathThreads>(
        thread, full_barriers, empty_barriers, &tmap_a, &tmap_b, &tmap_sfa, &tmap_sfb, &tmap_d);

    if (thread >= kNumMathThreads) {
        // Producer warpgroup: one thread issues every TMA load; the others only give up registers.
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            const uint32_t cta_rank = kNumTMAMulticast > 1 ? ptx::cluster_cta_rank() : 0;
            Scheduler scheduler(shape_m, num_groups, ks, total_k_blocks);
            const StageLoader loader{tmap_a, tmap_b, tmap_sfa, tmap_sfb, smem_a, smem_b, smem_sfa, smem_sfb, cta_rank};
            produce_wgrad_tiles<kNumStages>(scheduler, full_barriers, empty_barriers, stage_tiles,
                                            Layout::kStageTxBytes, loader);
        }
        __syncwarp();
    } else {
        // Consumer warpgroups: WGMMA per 128-K block, then promotion into FP32 registers.
        ptx::warpgroup_reg_alloc<Layout::kNumMathWarpgroups == 1 ? 248 : 232>();
        // Broadcast from lane 0 so the compiler knows the index is warp-uniform and keeps the
        // descriptors derived from it in uniform registers.
        const uint32_t warpgroup = warp_uniform(thread / 128);
        const uint32_t lane = thread % 32;
        // First of the two accumulator rows this thread holds within a wave (the other is +8), and the
        // first of its two columns in each 8-column group.
        const uint32_t row_in_wave = warpgroup * 64 + (thread % 128) / 32 * 16 + lane / 4;
        const uint32_t col_in_group = lane % 4 * 2;

        float accum[kNumAccum];
        float final_accum[Layout::kNumWaves][kNumAccum];
        const uint64_t desc_a_base = ptx::make_smem_desc_k_major_sw128(smem_a + warpgroup * 64 * Layout::BLOCK_K);
        const uint64_t desc_b_base = ptx::make_smem_desc_k_major_sw128(smem_b);
        const float* sfa_base = reinterpret_cast<const float*>(smem_sfa) + row_in_wave;
        const float* sfb_base = reinterpret_cast<const float*>(smem_sfb) + col_in_group;
        // Every row of a tile is valid: TMA zero-fills loads and clips stores past M.
        uint32_t num_valid_rows[Layout::kNumWaves];
        #pragma unroll
        for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
            num_valid_rows[w] = 64;
        uint32_t stage = 0, phase = 0;
        MmaPromote mainloop{full_barriers, empty_barriers, stage, phase, desc_a_base, desc_b_base, sfa_base,
                            sfb_base, lane, accum, final_accum};
        while (true) {
            // The next tile, from the slot of the stage holding its first k-block.
            ptx::mbarrier_wait_opaque(&full_barriers[stage], phase);
            const WgradTile tile = read_wgrad_tile(stage_tiles + stage);
            if (tile.n_block == kNoMoreTiles)
                break;

            #pragma unroll
            for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    final_accum[w][i] = 0.0f;

            if (tile.num_k_blocks > 0) {
                mainloop.k_loop(tile.num_k_blocks);
            } else {
                // An empty group's tile took one stage with nothing loaded: free it.
                release_stage<kNumTMAMulticast>(&empty_barriers[stage], lane);
                if (++stage == kNumStages)
                    stage = 0, phase ^= 1;
                // Adding zeros would leave D as it is.
                if constexpr (kAccumulate)
                    continue;
            }

            // Epilogue, per warpgroup on its own rows of the D tile.
            const Tile store{tile.row, tile.n_block, tile.group, BLOCK_M};
            store_tile<BLOCK_M, BLOCK_N, kNumDChunks, kOutType, kSwizzleDBytes, kStoreKind, Layout::kNumWaves,
                       Layout::kWaveM, kNumAccum, kAccumulate>(&tmap_d, smem_d, store, num_valid_rows, final_accum,
                                                               warpgroup, thread % 128, row_in_wave,
                                                               kWarpgroupBarrier + warpgroup, nullptr, 0, 0, SHAPE_N);
        }
        if (thread % 128 == 0)
            ptx::tma_store_wait<0>();
    }

    // A CTA's barriers and shared memory must outlive its peer's remote arrivals and multicasts.
    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
}

}  // namespace deepgemm

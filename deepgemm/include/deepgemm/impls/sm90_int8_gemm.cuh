#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_tile.cuh>
#include <deepgemm/impls/int8/dequantize.cuh>
#include <deepgemm/impls/int8/mma.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

// D[M, N] = A[M, K] * B[N, K]^T with signed 8-bit operands (W8A8) and exact s32 accumulation in the
// tensor cores; the epilogue either stores the s32 sums as they are (Int8Out::Int32) or applies the
// per-token / per-channel scales, the optional zero-point correction and bias
// (impls/int8/dequantize.cuh) and stores BF16, FP16 or FP32.
//
// The pipeline is the other families': a producer warpgroup streams A and B through a ring of
// shared-memory stages with TMA, one or two consumer warpgroups run WGMMAs (m64nNk32, s8 x s8 -> s32;
// 8-bit WGMMA reads both operands K-major only, hence NT only), a persistent scheduler walks the
// tiles, 2-CTA clusters may multicast one operand. A k-block is one 128-byte line of K, as for FP8.
// With integer sums there is nothing to promote: the accumulators stay in the tensor cores' hands
// across k-blocks, as in the 16-bit kernel. The grouped kinds are the other families'.
namespace deepgemm {

// The epilogue's store type: the s32 sums travel as FP32 bits (the FP32 store path moves bits only).
template <Int8Out kOut>
constexpr OutType kInt8StoreType = kOut == Int8Out::BF16 ? OutType::BF16
                                   : kOut == Int8Out::FP16 ? OutType::FP16 : OutType::FP32;

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumStages,
          Int8Out kOut, uint32_t kNumDChunks, GemmKind kKind>
struct Int8GemmLayout {
    // 128 int8 of K: one 128-byte swizzle line per operand row and stage.
    static constexpr uint32_t BLOCK_K = 128;
    static constexpr uint32_t kNumMathWarpgroups = BLOCK_M == 64 ? 1 : 2;
    static constexpr uint32_t kNumMathThreads = 128 * kNumMathWarpgroups;
    static constexpr uint32_t kNumThreads = kNumMathThreads + 128;
    // Each consumer warpgroup owns 64 rows of a "wave"; BLOCK_M = 256 runs two waves per k-block.
    static constexpr uint32_t kWaveM = 64 * kNumMathWarpgroups;
    static constexpr uint32_t kNumWaves = BLOCK_M / kWaveM;
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, BLOCK_K);

    // The D tile is staged in kNumDChunks column chunks (see store_tile).
    static constexpr uint32_t kOutBytes = kOut == Int8Out::BF16 || kOut == Int8Out::FP16 ? 2 : 4;
    static constexpr uint32_t kSmemDBytes = align_up(BLOCK_M * BLOCK_N / kNumDChunks * kOutBytes, 1024u);
    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K;
    static constexpr uint32_t kSmemBBytes = BLOCK_N * BLOCK_K;
    static constexpr uint32_t kSmemTileBytes = KindTraits<kKind>::kHandsOffTiles ? kNumStages * sizeof(Tile) : 0;
    static constexpr uint32_t kSmemBytes =
        kSmemDBytes + kNumStages * (kSmemABytes + kSmemBBytes) + kNumStages * 2 * 8 + kSmemTileBytes;

    static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "BLOCK_M is 64, 128 or 256");
    static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "integer WGMMA N is a multiple of 16 up to 256 here");
    static_assert(SHAPE_N % 2 == 0, "N is even: a thread's column pair is wholly inside or outside D");
    static_assert(kSmemBBytes % 1024 == 0, "128B-swizzled tiles must stay 1024-byte aligned");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");
};

// The producer's role: issues the loads of k-block `k_block` of `tile` into stage `stage`, both
// completing on its full barrier `bar`. With multicast, rank 0 loads the shared operand into both CTAs
// of the pair. As in the other kernels, the roles refer to the kernel's own variables.
template <typename Layout, uint32_t SHAPE_N, uint32_t BLOCK_N, uint32_t kNumTMAMulticast, bool kIsMulticastOnA,
          GemmKind kKind>
struct Int8StageLoader {
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
        // The experts' B matrices lie back to back: one [G * N, K] tensor map.
        const int32_t k = k_block * Layout::BLOCK_K, m = tile.row, n = tile.n_block * BLOCK_N + tile.group * SHAPE_N;
        if constexpr (KindTraits<kKind>::kHasGroupDim) {
            ptx::tma_load_3d(&tmap_a, bar, dst_a, k, m, tile.group);
        } else if constexpr (kMulticastA) {
            if (cta_rank == 0)
                ptx::tma_load_2d_multicast(&tmap_a, bar, dst_a, k, m, kClusterMask);
        } else {
            ptx::tma_load_2d(&tmap_a, bar, dst_a, k, m);
        }
        if constexpr (kMulticastB) {
            if (cta_rank == 0)
                ptx::tma_load_2d_multicast(&tmap_b, bar, dst_b, k, n, kClusterMask);
        } else {
            ptx::tma_load_2d(&tmap_b, bar, dst_b, k, n);
        }
    }
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
    using Traits = KindTraits<kKind>;
    using Scheduler = TileScheduler<kKind, SHAPE_N, BLOCK_M, BLOCK_N, 16, kIsMulticastOnA || kNumTMAMulticast == 1>;
    using ConsumerScheduler = TileScheduler<Traits::kConsumerSchedulerKind, SHAPE_N, BLOCK_M, BLOCK_N, 16,
                                            kIsMulticastOnA || kNumTMAMulticast == 1>;
    using StageLoader = Int8StageLoader<Layout, SHAPE_N, BLOCK_N, kNumTMAMulticast, kIsMulticastOnA, kKind>;
    using Mma = Int8Mma<Layout, BLOCK_N, kNumStages, kNumTMAMulticast>;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = Mma::kNumAccum;
    // Hardware barrier 0 is __syncthreads; consumer warpgroup g synchronises within itself on 1 + g.
    constexpr uint32_t kWarpgroupBarrier = 1;
    static_assert(Traits::allows_multicast(kNumTMAMulticast, kIsMulticastOnA),
                  "the grouped kinds multicast only contiguous A");
    static_assert(kNumTMAMulticast == 1 || kNumTMAMulticast == 2, "clusters of 1 or 2 CTAs");
    static_assert(kOut != Int8Out::Int32 || (kBias == Int8Bias::None && !kHasAzp),
                  "the raw s32 output takes no scales, bias or zero points");

    // Shared memory: [D tile][A stages][B stages][full | empty barriers][tile per stage (grouped kinds)].
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
        // Producer warpgroup: one thread issues every TMA load; the others only give up registers.
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            const uint32_t cta_rank = kNumTMAMulticast > 1 ? ptx::cluster_cta_rank() : 0;
            Scheduler scheduler(shape_m, num_groups, grouped_layout);
            StageLoader loader{tmap_a, tmap_b, smem_a, smem_b, cta_rank};
            produce_tiles<kKind, kNumStages, Layout::kNumKBlocks, kLoadBatch>(
                scheduler, full_barriers, empty_barriers, stage_tiles, Layout::kSmemABytes + Layout::kSmemBBytes,
                loader);
        }
        __syncwarp();
    } else {
        ptx::warpgroup_reg_alloc<Layout::kNumMathWarpgroups == 1 ? 248 : 232>();
        // Broadcast from lane 0 so the compiler knows the index is warp-uniform and keeps the
        // descriptors derived from it in uniform registers.
        const uint32_t warpgroup = warp_uniform(thread / 128);
        const uint32_t thread_in_warpgroup = thread % 128;
        const uint32_t lane = thread % 32;
        // First of the two accumulator rows this thread holds within a wave (the other is +8).
        const uint32_t row_in_wave = warpgroup * 64 + thread_in_warpgroup / 32 * 16 + lane / 4;

        const uint64_t desc_a_base = ptx::make_smem_desc_k_major_sw128(smem_a + warpgroup * 64 * Layout::BLOCK_K);
        const uint64_t desc_b_base = ptx::make_smem_desc_k_major_sw128(smem_b);
        uint32_t stage = 0, phase = 0;
        ConsumerScheduler scheduler(shape_m, num_groups, grouped_layout);
        Tile tile;
        while (next_consumer_tile<kKind>(scheduler, tile, full_barriers, stage_tiles, stage, phase)) {
            uint32_t num_valid_rows[Layout::kNumWaves];
            warpgroup_valid_rows<kKind, Layout::kNumWaves, Layout::kWaveM>(tile, warpgroup, num_valid_rows);

            int32_t accum[Layout::kNumWaves][kNumAccum];
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
                    const uint32_t row = tile.row + w * Layout::kWaveM + row_in_wave;
                    const uint32_t col = tile.n_block * BLOCK_N + lane % 4 * 2;
                    dequantize_in_place<kBias, kHasAzp>(accum[w], epilogue_args, tile.group, row, shape_m, col,
                                                        SHAPE_N);
                }
            }
            float out[Layout::kNumWaves][kNumAccum];
            #pragma unroll
            for (uint32_t w = 0; w < Layout::kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    out[w][i] = __int_as_float(accum[w][i]);

            // Epilogue, per warpgroup on its own rows of the D tile.
            store_tile<BLOCK_M, BLOCK_N, kNumDChunks, kInt8StoreType<kOut>, kSwizzleDBytes, kKind, Layout::kNumWaves,
                       Layout::kWaveM>(&tmap_d, smem_d, tile, num_valid_rows, out, warpgroup, thread_in_warpgroup,
                                       row_in_wave, kWarpgroupBarrier + warpgroup, d, d_row_bytes, d_group_bytes,
                                       SHAPE_N);
        }
        if (thread_in_warpgroup == 0)
            ptx::tma_store_wait<0>();
    }

    // A CTA's barriers and shared memory must outlive its peer's remote arrivals and multicasts.
    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
}

}  // namespace deepgemm

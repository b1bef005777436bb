#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/epilogue/store_tile.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

// The skeleton of the kernels whose tensor cores keep the sums across k-blocks, with no promotion step
// into registers between them: the 16-bit (sm90_bf16_gemm.cuh), INT8 (sm90_int8_gemm.cuh) and TF32
// (sm90_tf32_gemm.cuh) GEMMs. Their pipeline is the FP8 kernel's (sm90_fp8_gemm_1d2d.cuh): a producer
// warpgroup streams A and B through a ring of shared-memory stages with TMA, one or two consumer
// warpgroups run WGMMAs, a persistent scheduler walks the tiles, 2-CTA clusters may multicast one
// operand. Each k-block's WGMMAs are issued while the previous k-block's still run, and a stage is
// freed once the WGMMAs after it were issued.
//
// A kernel instantiates `unpromoted_gemm` with its layout (UnpromotedLayout), its stage loader
// (UnpromotedStageLoader) and a function that runs one tile on one consumer warpgroup: it issues the
// tile's WGMMAs through `UnpromotedConsumer::mma_k_blocks` with its own WGMMA wrapper (the family's
// mma.cuh) and accumulators, and stores the result with its own epilogue.
namespace deepgemm {

template <typename T, uint32_t kNumWaves, uint32_t kNumAccum>
__device__ __forceinline__ void fence_accumulators(T (&accum)[kNumWaves][kNumAccum]) {
    #pragma unroll
    for (uint32_t w = 0; w < kNumWaves; ++w)
        #pragma unroll
        for (uint32_t i = 0; i < kNumAccum; ++i)
            ptx::fence_operand(accum[w][i]);
}

// One consumer warpgroup's view of the pipeline, handed to the kernel's per-tile function: its
// indices, its ring position and WGMMA descriptors, and the shared steps of a tile. It refers to the
// kernel's own variables; `stage` and `phase` are advanced by the k-loop.
template <typename Layout, typename Scheduler, GemmKind kKind, uint32_t kNumTMAMulticast, uint32_t kNumKBlocks>
struct UnpromotedConsumer {
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    // Hardware barrier 0 is __syncthreads; consumer warpgroup g synchronises within itself on 1 + g.
    static constexpr uint32_t kWarpgroupBarrier = 1;

    uint64_t* const& full_barriers;
    uint64_t* const& empty_barriers;
    uint32_t& stage;
    uint32_t& phase;
    // This warpgroup's WGMMA descriptors in stage 0; in stage s, those plus s times the stage's size.
    const uint64_t& desc_a_base;
    const uint64_t& desc_b_base;
    const uint32_t& warpgroup;
    const uint32_t& thread_in_warpgroup;
    const uint32_t& lane;
    // First of the two accumulator rows this thread holds within a wave (the other is +8).
    const uint32_t& row_in_wave;
    uint8_t* const& smem_d;
    const Scheduler& scheduler;

    // Waits for the current stage and has `wgmma.issue(w, wave_desc_a, desc_b, k_block)` put wave w's
    // WGMMAs of the k-block into its accumulators, then commits them as one group. With `is_guarded`,
    // waves without valid rows (rows outside every group: padding, past masked_m) cost no tensor-core
    // work.
    template <typename Wgmma>
    __device__ __forceinline__ void issue_k_block(Wgmma& wgmma, uint32_t k_block, bool is_guarded,
                                                  const uint32_t (&num_valid_rows)[kNumWaves]) {
        ptx::mbarrier_wait(&full_barriers[stage], phase);
        const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
        const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w) {
            if (is_guarded && num_valid_rows[w] == 0)
                continue;
            ptx::wgmma_fence();
            // A wave's 64-row slice of A starts 64 * 128 bytes further on, in both majors: 64
            // K-major lines, or one 64-row MN-major chunk of BLOCK_K lines.
            wgmma.issue(w, desc_a + (w * Layout::kWaveM * 128 >> 4), desc_b, k_block);
        }
        ptx::wgmma_commit_group();
    }

    // Hands stage `s` back to the producer; its WGMMAs must have completed. (k_loop calls release_stage
    // itself: through this wrapper ptxas orders the 16-bit and INT8 kernels' instructions differently.)
    __device__ __forceinline__ void release(uint32_t s) const {
        release_stage<kNumTMAMulticast>(&empty_barriers[s], lane);
    }

    __device__ __forceinline__ void next_stage() {
        if (++stage == Layout::kNumStages)
            stage = 0, phase ^= 1;
    }

    // Per k-block: issue_k_block with `wgmma.issue`, then `wgmma.wait_issued` waits for all WGMMA
    // groups but the newest (or, to promote, for all). A kernel with a k-block schedule of its own (the
    // 3xTF32 promotion's, impls/tf32/mma.cuh) runs it from issue_k_block, release and next_stage instead.
    template <typename Wgmma>
    __device__ __forceinline__ void k_loop(Wgmma& wgmma, bool is_guarded, const uint32_t (&num_valid_rows)[kNumWaves]) {
        // The stage whose WGMMAs may still run; freed once the next k-block's are issued.
        uint32_t in_flight_stage = 0;
        for (uint32_t k_block = 0; k_block < kNumKBlocks; ++k_block) {
            issue_k_block(wgmma, k_block, is_guarded, num_valid_rows);
            wgmma.wait_issued(k_block);
            if (k_block > 0)
                release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
            in_flight_stage = stage;
            next_stage();
        }
        ptx::wgmma_wait_group<0>();
        release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
    }

    // The MMA over every k-block of the tile; the guarded loop only for tiles whose last wave holds no
    // valid row, compiled twice for kinds with invalid rows (as in the FP8 kernel) so that tiles whose
    // every wave has valid rows run the loop free of the per-wave test. Then `wgmma.result` is final.
    template <typename Wgmma>
    __device__ __forceinline__ void mma_k_blocks(Wgmma& wgmma, const uint32_t (&num_valid_rows)[kNumWaves]) {
        if (!KindTraits<kKind>::kHasInvalidRows || num_valid_rows[kNumWaves - 1] > 0)
            k_loop(wgmma, false, num_valid_rows);
        else
            k_loop(wgmma, true, num_valid_rows);
        fence_accumulators(wgmma.result());
    }

    // accum += C over the tile: each wave's rows of this thread, C [M, SHAPE_N] in kOutType.
    template <OutType kOutType, uint32_t SHAPE_N, uint32_t kNumAccum>
    __device__ __forceinline__ void add_c(float (&accum)[kNumWaves][kNumAccum], const uint8_t* c,
                                          uint64_t c_row_bytes, const Tile& tile, uint32_t shape_m) const {
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w) {
            const uint32_t row = tile.row + w * Layout::kWaveM + row_in_wave;
            const uint32_t col = tile.n_block * Layout::BLOCK_N;
            const uint8_t* c_col = c + col * (kOutType == OutType::FP32 ? 4 : 2);
            add_source<kOutType>(accum[w], c_col, c_row_bytes, row, lane % 4, shape_m, SHAPE_N - col);
        }
    }

    // The epilogue's store, per warpgroup on its own rows of the D tile (see store_tile).
    template <OutType kOutType, uint32_t kSwizzleDBytes, uint32_t kNumDChunks, uint32_t SHAPE_N, uint32_t kNumAccum>
    __device__ __forceinline__ void store(const TmaDescriptor& tmap_d, const Tile& tile,
                                          const uint32_t (&num_valid_rows)[kNumWaves],
                                          float (&result)[kNumWaves][kNumAccum], uint8_t* d, uint64_t d_row_bytes,
                                          uint64_t d_group_bytes) const {
        store_tile<Layout::BLOCK_M, Layout::BLOCK_N, kNumDChunks, kOutType, kSwizzleDBytes, kKind, kNumWaves,
                   Layout::kWaveM>(&tmap_d, smem_d, tile, num_valid_rows, result, warpgroup, thread_in_warpgroup,
                                   row_in_wave, kWarpgroupBarrier + warpgroup, d, d_row_bytes, d_group_bytes,
                                   SHAPE_N);
    }
};

// The kernel body: carves shared memory, starts the pipeline, runs the producer (one thread issues
// every TMA load through `StageLoader`; split-K: of the tile's K slice) and the consumers, which call
// `consume_tile(consumer, tile, num_valid_rows)` for each tile they are handed.
template <typename Layout, typename StageLoader, uint32_t SHAPE_N, GemmKind kKind, uint32_t kNumTMAMulticast,
          bool kIsMulticastOnA, uint32_t kLoadBatch, uint32_t kSplitK, typename ConsumeTile>
__device__ __forceinline__ void unpromoted_gemm(uint32_t shape_m, uint32_t num_groups,
                                                const int32_t* __restrict__ grouped_layout,
                                                const TmaDescriptor& tmap_a, const TmaDescriptor& tmap_b,
                                                const TmaDescriptor& tmap_d, ConsumeTile&& consume_tile) {
    using Traits = KindTraits<kKind>;
    constexpr uint32_t BLOCK_M = Layout::BLOCK_M, BLOCK_N = Layout::BLOCK_N, kNumStages = Layout::kNumStages;
    using Scheduler =
        TileScheduler<kKind, SHAPE_N, BLOCK_M, BLOCK_N, 16, kIsMulticastOnA || kNumTMAMulticast == 1, kSplitK>;
    using ConsumerScheduler = TileScheduler<Traits::kConsumerSchedulerKind, SHAPE_N, BLOCK_M, BLOCK_N, 16,
                                            kIsMulticastOnA || kNumTMAMulticast == 1, kSplitK>;
    // K-blocks of one work unit: the whole K loop, or one slice of it (split-K).
    constexpr uint32_t kSliceKBlocks = Layout::kNumKBlocks / kSplitK;
    using Consumer = UnpromotedConsumer<Layout, ConsumerScheduler, kKind, kNumTMAMulticast, kSliceKBlocks>;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    // As in the FP8 kernel, a cluster pair shares its m-block, so contiguous A may be multicast.
    static_assert(Traits::allows_multicast(kNumTMAMulticast, kIsMulticastOnA),
                  "the grouped kinds multicast only contiguous A");
    static_assert(kNumTMAMulticast == 1 || kNumTMAMulticast == 2, "clusters of 1 or 2 CTAs");

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
        // Producer warpgroup: one thread issues every TMA load; the others only give up registers.
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
        // Broadcast from lane 0 so the compiler knows the index is warp-uniform and keeps the
        // descriptors derived from it in uniform registers.
        const uint32_t warpgroup = warp_uniform(thread / 128);
        const uint32_t thread_in_warpgroup = thread % 128;
        const uint32_t lane = thread % 32;
        const uint32_t row_in_wave = warpgroup * 64 + thread_in_warpgroup / 32 * 16 + lane / 4;

        // A warpgroup's 64 rows of A start 64 * 128 bytes into the stage in both majors.
        const uint64_t desc_a_base =
            Layout::kIsAMNMajor ? ptx::make_smem_desc_mn_major_sw128(smem_a + warpgroup * 64 * 128, Layout::kChunkBytes)
                                : ptx::make_smem_desc_k_major_sw128(smem_a + warpgroup * 64 * 128);
        const uint64_t desc_b_base = Layout::kIsBMNMajor
                                         ? ptx::make_smem_desc_mn_major_sw128(smem_b, Layout::kChunkBytes)
                                         : ptx::make_smem_desc_k_major_sw128(smem_b);
        uint32_t stage = 0, phase = 0;
        ConsumerScheduler scheduler(shape_m, num_groups, grouped_layout);
        Consumer consumer{full_barriers, empty_barriers, stage,   phase,       desc_a_base, desc_b_base,
                          warpgroup,     thread_in_warpgroup, lane, row_in_wave, smem_d,     scheduler};
        Tile tile;
        while (next_consumer_tile<kKind>(scheduler, tile, full_barriers, stage_tiles, stage, phase)) {
            uint32_t num_valid_rows[Layout::kNumWaves];
            warpgroup_valid_rows<kKind, Layout::kNumWaves, Layout::kWaveM>(tile, warpgroup, num_valid_rows);
            consume_tile(consumer, tile, num_valid_rows);
        }
        if (thread_in_warpgroup == 0)
            ptx::tma_store_wait<0>();
    }

    // A CTA's barriers and shared memory must outlive its peer's remote arrivals and multicasts.
    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
}

}  // namespace deepgemm

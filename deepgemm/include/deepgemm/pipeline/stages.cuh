#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/ptx/cluster.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/smem.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

// The ring of shared-memory stages every GEMM kernel runs on: its barriers, the producer's walk over
// tiles and k-blocks through it, how the consumers learn their next tile, and how they free a stage.
//
// Kinds with KindTraits::kHandsOffTiles (the grouped ones) have the producer hand each tile to the
// consumers in a slot of the stage that holds the tile's first k-block: the consumers then run no
// scheduler of their own. (A scheduler that walks groups in the consumers' loop made ptxas move the
// stage index and the WGMMA descriptors out of uniform registers.)
namespace deepgemm {

// Initialises the ring's barriers (by one thread): a stage is full once the producer's TMA bytes
// landed, and empty once every consumer warp of every CTA in the cluster freed it (with multicast the
// producer overwrites the peer's copy too). Then syncs the block, or with multicast the cluster, so
// no barrier is used before it is initialised.
template <uint32_t kNumStages, uint32_t kNumTMAMulticast, uint32_t kNumMathThreads>
__device__ __forceinline__ void init_stage_barriers(bool is_init_thread, uint64_t* full_barriers,
                                                    uint64_t* empty_barriers) {
    if (is_init_thread) {
        for (uint32_t s = 0; s < kNumStages; ++s) {
            ptx::mbarrier_init(&full_barriers[s], 1);
            ptx::mbarrier_init(&empty_barriers[s], kNumTMAMulticast * kNumMathThreads / 32);
        }
        ptx::fence_barrier_init();
    }
    if constexpr (kNumTMAMulticast > 1)
        ptx::cluster_sync();
    else
        __syncthreads();
}

// How every GEMM kernel starts: the producer's first thread checks the dynamic shared memory the
// host gave (sized from a Python mirror of the kernel's layout: this catches any drift) and
// prefetches the tensor maps, then the ring's barriers are initialised (init_stage_barriers).
template <uint32_t kSmemBytes, uint32_t kNumStages, uint32_t kNumTMAMulticast, uint32_t kNumMathThreads,
          typename... TensorMaps>
__device__ __forceinline__ void start_pipeline(uint32_t thread, uint64_t* full_barriers, uint64_t* empty_barriers,
                                               const TensorMaps*... tensor_maps) {
    if (thread == kNumMathThreads) {
        if (ptx::dynamic_smem_size() < kSmemBytes)
            device_trap();
        (ptx::prefetch_tma_descriptor(tensor_maps), ...);
    }
    init_stage_barriers<kNumStages, kNumTMAMulticast, kNumMathThreads>(thread == kNumMathThreads + 32, full_barriers,
                                                                       empty_barriers);
}

// Transaction bytes a loader's first k-block of each tile brings on top of the stage's own (the FP8
// masked kind's B scales): its static member kFirstStageExtraTxBytes where it has one, else none.
// `produce_tiles` arms them with the stage's in its one arrival, so every copy a phase waits for is
// counted before the phase can complete.
template <typename StageLoader, typename = void>
struct FirstStageExtraTxBytes {
    static constexpr uint32_t kValue = 0;
};
template <typename StageLoader>
struct FirstStageExtraTxBytes<StageLoader, decltype(void(StageLoader::kFirstStageExtraTxBytes))> {
    static constexpr uint32_t kValue = StageLoader::kFirstStageExtraTxBytes;
};

// The producer thread's loop: for every tile of `scheduler` and every k-block, waits for a free
// stage, arms its full barrier for `stage_tx_bytes` (a tile's first k-block for the loader's
// FirstStageExtraTxBytes too) and calls `loader.load_stage(tile, k_block, stage, full_barrier)` to
// issue the TMA loads. Kinds that hand off tiles publish each tile in its first stage's slot (the
// barrier's release makes it visible to the consumers' acquiring wait) and end the stream with a
// kNoMoreTiles slot completed by a plain arrival.
//
// With kLoadBatch > 1 the loads go out in batches of that many consecutive k-blocks: the producer
// waits until the whole batch of stages is free, then issues it back to back. Each row of a tile is
// then requested kLoadBatch * 128 contiguous bytes at a time rather than 128, at the price of up to
// kLoadBatch - 1 stages of pipeline depth: it pays on thin tiles over long K, not where stages are
// few. The heuristic decides, see `_load_batch`.
template <GemmKind kKind, uint32_t kNumStages, uint32_t kNumKBlocks, uint32_t kLoadBatch, typename Scheduler,
          typename StageLoader>
__device__ __forceinline__ void produce_tiles(Scheduler& scheduler, uint64_t* full_barriers, uint64_t* empty_barriers,
                                              Tile* stage_tiles, uint32_t stage_tx_bytes, StageLoader& loader) {
    constexpr bool kHandsOffTiles = KindTraits<kKind>::kHandsOffTiles;
    constexpr uint32_t kFirstStageExtraTxBytes = FirstStageExtraTxBytes<StageLoader>::kValue;
    // While waiting for a stage the consumers may still hold the one before it (its WGMMAs in
    // flight): a batch of all kNumStages stages would wait for a stage they cannot free yet.
    static_assert(kLoadBatch >= 1 && kLoadBatch < kNumStages, "a load batch must leave the consumers a stage");
    Tile tile;
    uint32_t iter = 0;
    while (scheduler.next(tile)) {
        for (uint32_t k_first = 0; k_first < kNumKBlocks; k_first += kLoadBatch) {
            const uint32_t batch = min_of(kLoadBatch, kNumKBlocks - k_first);
            // Parity of the previous use of each stage: the first round passes at once.
            for (uint32_t i = 0; i < batch; ++i)
                ptx::mbarrier_wait(&empty_barriers[(iter + i) % kNumStages], (((iter + i) / kNumStages) & 1) ^ 1);
            for (uint32_t k_block = k_first; k_block < k_first + batch; ++k_block, ++iter) {
                const uint32_t stage = iter % kNumStages;
                if (kHandsOffTiles && k_block == 0)
                    stage_tiles[stage] = tile;
                uint64_t* bar = &full_barriers[stage];
                if (kFirstStageExtraTxBytes > 0 && k_block == 0)
                    ptx::mbarrier_arrive_expect_tx(bar, stage_tx_bytes + kFirstStageExtraTxBytes);
                else
                    ptx::mbarrier_arrive_expect_tx(bar, stage_tx_bytes);
                loader.load_stage(tile, k_block, stage, bar);
            }
        }
    }
    if constexpr (kHandsOffTiles) {
        const uint32_t stage = iter % kNumStages;
        ptx::mbarrier_wait(&empty_barriers[stage], ((iter / kNumStages) & 1) ^ 1);
        stage_tiles[stage] = Tile{0, kNoMoreTiles, 0, 0};
        ptx::mbarrier_arrive(&full_barriers[stage]);
    }
}

// Split-K: the producer's loader for K slices of kNumSliceKBlocks k-blocks. `produce_tiles` walks the
// k-blocks of one slice (0 to kNumSliceKBlocks); this passes each on to `loader` as the k-block of the
// whole K loop it is, in the slice the scheduler handed out with the tile.
template <typename Loader, typename Scheduler, uint32_t kNumSliceKBlocks>
struct KSliceLoader {
    Loader& loader;
    const Scheduler& scheduler;

    __device__ __forceinline__ void load_stage(const Tile& tile, uint32_t k_block, uint32_t stage, uint64_t* bar) {
        loader.load_stage(tile, scheduler.split * kNumSliceKBlocks + k_block, stage, bar);
    }
};

// The consumers' next tile: from their own scheduler, or for kinds that hand off tiles from the slot
// of the stage they are about to consume. False when no tile is left.
template <GemmKind kKind, typename Scheduler>
__device__ __forceinline__ bool next_consumer_tile(Scheduler& scheduler, Tile& tile, uint64_t* full_barriers,
                                                   const Tile* stage_tiles, uint32_t stage, uint32_t phase) {
    if constexpr (KindTraits<kKind>::kHandsOffTiles) {
        ptx::mbarrier_wait_opaque(&full_barriers[stage], phase);
        tile = read_tile(stage_tiles + stage);
        return tile.n_block != kNoMoreTiles;
    } else {
        return scheduler.next(tile);
    }
}

// One consumer warp's share of freeing a stage; called by the whole warp (`lane`: this thread's lane).
// With multicast, the peer CTA's producer also writes this CTA's copy of the stage, so the warp frees
// it in every CTA of the cluster: lane r arrives on CTA r's barrier, all in one instruction (lane 0
// arriving on each CTA in turn held the warp up).
template <uint32_t kNumTMAMulticast>
__device__ __forceinline__ void release_stage(uint64_t* empty_barrier, uint32_t lane) {
    if constexpr (kNumTMAMulticast > 1) {
        if (lane < kNumTMAMulticast)
            ptx::mbarrier_arrive_cluster(empty_barrier, lane);
    } else if (lane == 0) {
        ptx::mbarrier_arrive(empty_barrier);
    }
}

}  // namespace deepgemm

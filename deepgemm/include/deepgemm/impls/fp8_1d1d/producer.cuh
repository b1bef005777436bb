#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/impls/fp8_1d1d/scheduler.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/tma.cuh>

namespace deepgemm {

// The producer's loads of one stage: k-block `k_block` (absolute, along A's and B's K) of `tile`, all
// completing on the stage's full barrier `bar`: the A tile and its 1x128 scales (one per row), the B
// tile and its 1x128 scales (one per column of D). Both scale tiles are TMA boxes of one k-block's
// column of the MN-major scale tensors, so a stage holds everything its promotion reads. With a 2-CTA
// cluster, rank 0 loads the shared operand and its scales into both CTAs.
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumTMAMulticast, bool kIsMulticastOnA>
struct WgradStageLoader {
    static constexpr uint16_t kClusterMask = (1u << kNumTMAMulticast) - 1;

    const TmaDescriptor& tmap_a;
    const TmaDescriptor& tmap_b;
    const TmaDescriptor& tmap_sfa;
    const TmaDescriptor& tmap_sfb;
    uint8_t* const& smem_a;
    uint8_t* const& smem_b;
    uint8_t* const& smem_sfa;
    uint8_t* const& smem_sfb;
    const uint32_t& cta_rank;

    __device__ __forceinline__ void load_stage(const WgradTile& tile, uint32_t k_block, uint32_t stage,
                                               uint64_t* bar) const {
        uint8_t* dst_a = smem_a + stage * Layout::kSmemABytes;
        uint8_t* dst_b = smem_b + stage * Layout::kSmemBBytes;
        uint8_t* dst_sfa = smem_sfa + stage * Layout::kSmemSFABytes;
        uint8_t* dst_sfb = smem_sfb + stage * Layout::kSmemSFBBytes;
        const int32_t k = k_block * Layout::BLOCK_K, m = tile.row, n = tile.n_block * BLOCK_N;
        if constexpr (kNumTMAMulticast > 1 && kIsMulticastOnA) {
            if (cta_rank == 0) {
                ptx::tma_load_2d_multicast(&tmap_a, bar, dst_a, k, m, kClusterMask);
                ptx::tma_load_2d_multicast(&tmap_sfa, bar, dst_sfa, m, k_block, kClusterMask);
            }
        } else {
            ptx::tma_load_2d(&tmap_a, bar, dst_a, k, m);
            ptx::tma_load_2d(&tmap_sfa, bar, dst_sfa, m, k_block);
        }
        if constexpr (kNumTMAMulticast > 1 && !kIsMulticastOnA) {
            if (cta_rank == 0) {
                ptx::tma_load_2d_multicast(&tmap_b, bar, dst_b, k, n, kClusterMask);
                ptx::tma_load_2d_multicast(&tmap_sfb, bar, dst_sfb, n, k_block, kClusterMask);
            }
        } else {
            ptx::tma_load_2d(&tmap_b, bar, dst_b, k, n);
            ptx::tma_load_2d(&tmap_sfb, bar, dst_sfb, n, k_block);
        }
    }
};

// The producer thread's loop over the ring of stages (the protocol of pipeline/stages.cuh: full
// barriers complete on the TMA bytes, empty ones once every consumer warp of the cluster freed the
// stage). Unlike produce_tiles, a tile's k-blocks are a run-time count (the k-grouped kind's groups
// differ), and every tile is handed to the consumers in the slot of its first stage. A tile of no
// k-blocks takes one stage with nothing loaded, completed by a plain arrival: the consumers still get
// it, to write its D (C, or zeros). The stream ends with a kNoMoreTiles slot.
template <uint32_t kNumStages, typename Scheduler, typename StageLoader>
__device__ __forceinline__ void produce_wgrad_tiles(Scheduler& scheduler, uint64_t* full_barriers,
                                                    uint64_t* empty_barriers, WgradTile* stage_tiles,
                                                    uint32_t stage_tx_bytes, const StageLoader& loader) {
    WgradTile tile;
    uint32_t first_k_block, iter = 0;
    while (scheduler.next(tile, first_k_block)) {
        const uint32_t num_stages_used = max_of(tile.num_k_blocks, 1u);
        for (uint32_t i = 0; i < num_stages_used; ++i, ++iter) {
            const uint32_t stage = iter % kNumStages;
            // Parity of the previous use of the stage: the first round passes at once.
            ptx::mbarrier_wait(&empty_barriers[stage], ((iter / kNumStages) & 1) ^ 1);
            if (i == 0)
                stage_tiles[stage] = tile;
            uint64_t* bar = &full_barriers[stage];
            if (tile.num_k_blocks == 0) {
                ptx::mbarrier_arrive(bar);
            } else {
                ptx::mbarrier_arrive_expect_tx(bar, stage_tx_bytes);
                loader.load_stage(tile, first_k_block + i, stage, bar);
            }
        }
    }
    const uint32_t stage = iter % kNumStages;
    ptx::mbarrier_wait(&empty_barriers[stage], ((iter / kNumStages) & 1) ^ 1);
    stage_tiles[stage] = WgradTile{0, kNoMoreTiles, 0, 0};
    ptx::mbarrier_arrive(&full_barriers[stage]);
}

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/ptx/global.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// One output tile of the 1D1D kernel as the producer hands it to the consumers (in the slot of the
// stage holding its first k-block): its first row of D, its n-block, its group (the k-grouped kind's
// D[g]; 0 for the dense kind) and how many 128-K blocks it sums. A tile of no k-blocks (an empty group)
// still takes one stage, loaded with nothing, to hand itself over.
struct WgradTile {
    uint32_t row;
    uint32_t n_block;
    uint32_t group;
    uint32_t num_k_blocks;
};

// A tile another thread wrote to shared memory, read word by word (see read_tile).
__device__ __forceinline__ WgradTile read_wgrad_tile(const WgradTile* slot) {
    const volatile uint32_t* words = reinterpret_cast<const volatile uint32_t*>(slot);
    return {words[0], words[1], words[2], words[3]};
}

// The producer's walk over the tiles of the 1D1D kernel. Every group is the same [shape_m, SHAPE_N]
// problem, rasterised as the dense TileScheduler does (groups of 16 blocks along one dimension, for L2
// reuse, stepping along the multicast operand's partner so a 2-CTA pair shares it), over its own
// range of K: the dense kind has one group of SHAPE_K; the k-grouped kind has `num_groups`, group g
// taking the ks[g] / 128 k-blocks after those of groups before it. Tiles are numbered group after group
// (the same number in each); CTA b takes tiles b, b + grid, ...
//
// Group sizes come from the device (`ks`, int32 [num_groups]), each read once per CTA as its walk
// enters the group. Sizes that break the contract (negative, not a multiple of 128, a sum past K) never
// lead outside the tensors: each group's k-blocks are clamped to those left of `total_k_blocks`.
// A 2-CTA pair (block ids 2c, 2c + 1 with an even grid) takes tiles of one group as long as every group
// has an even number of tiles, which the host's multicast rules ensure.
template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t BLOCK_N, bool kGroupAlongN,
          bool kIsKGrouped>
struct WgradScheduler {
    // One group's tile walk: its rasterisation, asked for one tile at a time.
    using GroupWalk = TileScheduler<GemmKind::Dense, SHAPE_N, BLOCK_M, BLOCK_N, 16, kGroupAlongN>;
    static constexpr uint32_t kNumDenseKBlocks = SHAPE_K / 128;
    static_assert(kIsKGrouped || SHAPE_K % 128 == 0, "K is whole 128-wide scale blocks");

    GroupWalk walk;
    const uint32_t num_groups;
    const uint32_t num_tiles_per_group;
    const int32_t* const ks;
    const uint32_t total_k_blocks;
    uint32_t next_tile;
    // The group the walk is in, its first k-block and its k-blocks.
    uint32_t group = 0;
    uint32_t group_first_k_block = 0;
    uint32_t group_k_blocks = 0;

    __device__ WgradScheduler(uint32_t shape_m, uint32_t num_groups, const int32_t* ks, uint32_t total_k_blocks)
        : walk(shape_m, 1, nullptr), num_groups(num_groups), num_tiles_per_group(walk.num_m_blocks * GroupWalk::kNumNBlocks),
          ks(ks), total_k_blocks(total_k_blocks), next_tile(blockIdx.x) {
        if (num_groups > 0)
            group_k_blocks = k_blocks_of(0);
    }

    // The next tile and the absolute index of its first k-block; false when none is left.
    __device__ bool next(WgradTile& tile, uint32_t& first_k_block) {
        const uint32_t id = next_tile;
        if (num_tiles_per_group == 0 || id / num_tiles_per_group >= num_groups)
            return false;
        next_tile += gridDim.x;
        const uint32_t g = id / num_tiles_per_group;
        if constexpr (kIsKGrouped) {
            while (group < g) {
                group_first_k_block += group_k_blocks;
                group_k_blocks = k_blocks_of(++group);
            }
        }
        // The group walk hands out the tile numbered `id - g * tiles` within the group.
        walk.next_block = id - g * num_tiles_per_group;
        Tile t;
        walk.next(t);
        tile = {t.row, t.n_block, g, kIsKGrouped ? group_k_blocks : kNumDenseKBlocks};
        first_k_block = kIsKGrouped ? group_first_k_block : 0;
        return true;
    }

private:
    // K-blocks of group `g` (ks[g] / 128, 0 if negative), clamped to those left after the groups before.
    __device__ uint32_t k_blocks_of(uint32_t g) const {
        if constexpr (!kIsKGrouped) {
            return kNumDenseKBlocks;
        } else {
            const int32_t value = __ldg(ks + g);
            const uint32_t k_blocks = static_cast<uint32_t>(max_of(value, 0)) / 128;
            return min_of(k_blocks, total_k_blocks - group_first_k_block);
        }
    }
};

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/math.cuh>

namespace deepgemm {

// Persistent walk over the output tiles of one GEMM: CTA b takes tiles b, b + grid, b + 2 * grid, ...
//
// Tiles are numbered in groups of kNumBlocksPerGroup blocks along one dimension (N when
// kGroupAlongN) so that the CTAs running at the same moment read the same few operand tiles and
// keep them in L2. Within a group, consecutive tile ids step along the grouped dimension; so with a
// 2-CTA cluster (consecutive block ids) multicasting A, the pair shares its m-block as long as every
// group is of even width, which the host guarantees by choosing multicast on A only when the number
// of n-blocks is even (on B: the number of m-blocks).
template <uint32_t SHAPE_N, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumBlocksPerGroup, bool kGroupAlongN>
struct TileScheduler {
    static constexpr uint32_t kNumNBlocks = ceil_div(SHAPE_N, BLOCK_N);
    static_assert(kNumBlocksPerGroup % 2 == 0, "an even group keeps 2-CTA cluster pairs on one row or column");

    const uint32_t num_m_blocks;
    const uint32_t num_blocks;
    uint32_t next_block;

    __device__ explicit TileScheduler(uint32_t shape_m)
        : num_m_blocks(ceil_div(shape_m, BLOCK_M)), num_blocks(num_m_blocks * kNumNBlocks), next_block(blockIdx.x) {}

    __device__ bool next(uint32_t& m_block, uint32_t& n_block) {
        const uint32_t block = next_block;
        if (block >= num_blocks)
            return false;
        next_block += gridDim.x;
        if constexpr (kGroupAlongN)
            rasterise(block, kNumNBlocks, num_m_blocks, n_block, m_block);
        else
            rasterise(block, num_m_blocks, kNumNBlocks, m_block, n_block);
        return true;
    }

private:
    // Splits `block` into its coordinate along the grouped dimension (`num_grouped` blocks long) and
    // along the other one (`num_other` blocks long). The last group may be narrower.
    __device__ static void rasterise(uint32_t block, uint32_t num_grouped, uint32_t num_other,
                                     uint32_t& grouped, uint32_t& other) {
        const uint32_t blocks_per_group = kNumBlocksPerGroup * num_other;
        const uint32_t group = block / blocks_per_group;
        const uint32_t first = group * kNumBlocksPerGroup;
        const uint32_t width = min_of(kNumBlocksPerGroup, num_grouped - first);
        const uint32_t in_group = block - group * blocks_per_group;
        other = in_group / width;
        grouped = first + in_group % width;
    }
};

}  // namespace deepgemm

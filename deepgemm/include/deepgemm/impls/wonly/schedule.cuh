#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>

namespace deepgemm {

// The weight-only kernel's units of work and their order.
//
// Dense kind: a unit is one K range (split) of one tile, unit = ((m_block * n-blocks) + n_block) *
// splits + split, and the grid is persistent: CTA b takes units b, b + gridDim.x, b + 2 gridDim.x, ...
// A CTA's producer streams the next unit's stages while its consumers finish the last one, so the
// pipeline fills once per CTA rather than once per unit, and the heuristic can cut the work into
// several units per SM (wave quantisation) without paying a pipeline fill for each.
//
// Masked kind: a unit is one expert's n-block, every m-block of its valid rows in turn (their count
// is known only here, so a grid over m-blocks would mostly exit), unit = group * n-blocks + n_block,
// walked by a persistent grid the same way; a unit of an expert without rows has no m-block.
template <typename Layout, uint32_t kNumSplits, bool kIsMasked>
struct WonlyUnit {
    static_assert(!kIsMasked || kNumSplits == 1, "the masked kind does not split K");

    uint32_t group, n_block, split, m_first, m_end, num_tokens, k_begin, k_end;

    __device__ __forceinline__ static uint32_t count(uint32_t shape_m, uint32_t num_groups) {
        return kIsMasked ? num_groups * Layout::kNumNBlocks
                         : ceil_div(shape_m, Layout::BLOCK_M) * Layout::kNumNBlocks * kNumSplits;
    }

    __device__ __forceinline__ WonlyUnit(uint32_t unit, uint32_t shape_m, const int32_t* masked_m) {
        split = unit % kNumSplits;
        unit /= kNumSplits;
        n_block = unit % Layout::kNumNBlocks;
        unit /= Layout::kNumNBlocks;
        group = kIsMasked ? unit : 0;
        m_first = kIsMasked ? 0 : unit;
        // Valid tokens of the group (the masked kind); a masked unit with none has no m-block.
        num_tokens = kIsMasked ? min_of(static_cast<uint32_t>(max_of(__ldg(masked_m + group), 0)), shape_m)
                               : shape_m;
        m_end = kIsMasked ? ceil_div(num_tokens, Layout::BLOCK_M) : m_first + 1;
        k_begin = split * Layout::kNumKBlocks / kNumSplits;
        k_end = (split + 1) * Layout::kNumKBlocks / kNumSplits;
    }
};

}  // namespace deepgemm

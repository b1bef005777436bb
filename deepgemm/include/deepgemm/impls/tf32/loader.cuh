#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// Which parts of the split operands one k-block of a 3xTF32 product reads. Each operand is held as
// [rows, parts, K] (part 0: the TF32 high part, part 1: the low remainder); term t multiplies A's
// part kTermPartA[t] by B's part kTermPartB[t]. The small terms (lo * hi, hi * lo) come first, so
// they are summed while the accumulator is still small and keep their low bits. With one term the
// operands have one part, the plain FP32 values.
template <uint32_t kNumTerms>
struct Tf32Terms {
    static_assert(kNumTerms == 1 || kNumTerms == 3, "a TF32 GEMM runs 1 (TF32) or 3 (3xTF32) products");
    __device__ __forceinline__ static uint32_t part_a(uint32_t term) {
        return kNumTerms == 1 ? 0 : (term == 0 ? 1 : 0);
    }
    __device__ __forceinline__ static uint32_t part_b(uint32_t term) {
        return kNumTerms == 1 ? 0 : (term == 1 ? 1 : 0);
    }
};

// The operands of the TF32 kernel: the loads of k-block `k_block` of `tile`. Both operands are
// K-major 3-D maps (K, part, rows) read in boxes of BLOCK_K x 1 x rows, so each term's K tail is
// zero-filled by TMA and never reads the next part. K-blocks run term after term: k-block j of term t
// is k_block = t * kKBlocksPerTerm + j.
template <typename Layout, uint32_t kNumTerms>
struct Tf32SplitOperands {
    template <bool kMulticastA, bool kMulticastB, uint16_t kClusterMask>
    __device__ __forceinline__ static void load(const TmaDescriptor& tmap_a, const TmaDescriptor& tmap_b,
                                                uint64_t* bar, uint8_t* dst_a, uint8_t* dst_b, const Tile& tile,
                                                uint32_t k_block, uint32_t cta_rank) {
        const uint32_t term = k_block / Layout::kKBlocksPerTerm;
        const int32_t k = (k_block % Layout::kKBlocksPerTerm) * Layout::BLOCK_K;
        const int32_t part_a = Tf32Terms<kNumTerms>::part_a(term), part_b = Tf32Terms<kNumTerms>::part_b(term);
        const int32_t m = tile.row, n = tile.n_block * Layout::BLOCK_N;
        if constexpr (kMulticastA) {
            if (cta_rank == 0)
                ptx::tma_load_3d_multicast(&tmap_a, bar, dst_a, k, part_a, m, kClusterMask);
        } else {
            ptx::tma_load_3d(&tmap_a, bar, dst_a, k, part_a, m);
        }
        if constexpr (kMulticastB) {
            if (cta_rank == 0)
                ptx::tma_load_3d_multicast(&tmap_b, bar, dst_b, k, part_b, n, kClusterMask);
        } else {
            ptx::tma_load_3d(&tmap_b, bar, dst_b, k, part_b, n);
        }
    }
};

}  // namespace deepgemm

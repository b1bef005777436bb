#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// The producer's role: issues the loads of k-block `k_block` of `tile` into stage `stage`, both
// completing on its full barrier `bar`. With multicast, rank 0 loads the shared operand into both CTAs
// of the pair. As in the FP8 kernel, the roles refer to the kernel's own variables. Where the stage's
// operands come from is the family's `Operands::load` (Tma2dOperands, or the TF32 kernel's split parts).
template <typename Layout, uint32_t kNumTMAMulticast, bool kIsMulticastOnA, typename Operands>
struct UnpromotedStageLoader {
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
        Operands::template load<kMulticastA, kMulticastB, kClusterMask>(tmap_a, tmap_b, bar, dst_a, dst_b, tile,
                                                                          k_block, cta_rank);
    }
};

// Loads rows [row, row + kRows) of one k-block of an operand into a stage: a K-major operand is one
// box of 128-byte K lines; an MN-major one is kRows / 64 chunks, each a box of 64 MN-elements by
// BLOCK_K lines (kChunkBytes; coordinates are innermost first: (k, row) or (row, k)). With kMulticast
// the boxes land in every CTA of the cluster.
template <bool kIsMNMajor, uint32_t kRows, uint32_t kChunkBytes, bool kMulticast>
__device__ __forceinline__ void load_operand(const void* tmap, uint64_t* bar, uint8_t* dst, int32_t k, int32_t row,
                                             uint16_t cluster_mask) {
    if constexpr (kIsMNMajor) {
        #pragma unroll
        for (uint32_t chunk = 0; chunk < kRows / 64; ++chunk) {
            uint8_t* chunk_dst = dst + chunk * kChunkBytes;
            if constexpr (kMulticast)
                ptx::tma_load_2d_multicast(tmap, bar, chunk_dst, row + chunk * 64, k, cluster_mask);
            else
                ptx::tma_load_2d(tmap, bar, chunk_dst, row + chunk * 64, k);
        }
    } else if constexpr (kMulticast) {
        ptx::tma_load_2d_multicast(tmap, bar, dst, k, row, cluster_mask);
    } else {
        ptx::tma_load_2d(tmap, bar, dst, k, row);
    }
}

// The operands of the 16-bit and INT8 kernels: 2-D maps of A [M, K] and B [N, K] (either may be
// MN-major where the layout says so), or in the kinds with a group dimension a 3-D map of A.
template <typename Layout, uint32_t SHAPE_N, GemmKind kKind>
struct Tma2dOperands {
    template <bool kMulticastA, bool kMulticastB, uint16_t kClusterMask>
    __device__ __forceinline__ static void load(const TmaDescriptor& tmap_a, const TmaDescriptor& tmap_b,
                                                uint64_t* bar, uint8_t* dst_a, uint8_t* dst_b, const Tile& tile,
                                                uint32_t k_block, uint32_t cta_rank) {
        const int32_t k = k_block * Layout::BLOCK_K, m = tile.row, n = tile.n_block * Layout::BLOCK_N;
        if constexpr (KindTraits<kKind>::kHasGroupDim)
            ptx::tma_load_3d(&tmap_a, bar, dst_a, k, m, tile.group);
        else if (!kMulticastA || cta_rank == 0)
            load_operand<Layout::kIsAMNMajor, Layout::BLOCK_M, Layout::kChunkBytes, kMulticastA>(
                &tmap_a, bar, dst_a, k, m, kClusterMask);
        // The experts' B matrices lie back to back: one [G * N, K] tensor map.
        if (!kMulticastB || cta_rank == 0)
            load_operand<Layout::kIsBMNMajor, Layout::BLOCK_N, Layout::kChunkBytes, kMulticastB>(
                &tmap_b, bar, dst_b, k, n + tile.group * SHAPE_N, kClusterMask);
    }
};

}  // namespace deepgemm

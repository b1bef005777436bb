#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/global.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/smem.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// The B scales of one FP8 tile, copied to shared memory once per tile: those of its 128-column scale
// block for every k-block, then, when the tile may straddle two blocks, those of the next block (the
// same for the last one). `sfb` is [G, ceil(N / 128), ceil(K / 128)] FP32.
template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_N>
struct TileScalesB {
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, 128u);
    static constexpr uint32_t kNumScaleBlocksN = ceil_div(SHAPE_N, 128u);
    // A tile never straddles a 128-column scale block when BLOCK_N divides 128.
    static constexpr bool kIsUniform = 128 % BLOCK_N == 0;
    static constexpr uint32_t kNumRows = kIsUniform ? 1 : 2;
    static constexpr uint32_t kNumScales = kNumKBlocks * kNumRows;

    // Where the tile's scale rows start in `sfb`.
    __device__ __forceinline__ static void rows(const float* sfb, const Tile& tile, const float* (&rows)[2]) {
        const uint32_t scale_row = tile.n_block * BLOCK_N / 128;
        const float* group_scales = sfb + tile.group * (kNumScaleBlocksN * kNumKBlocks);
        rows[0] = group_scales + scale_row * kNumKBlocks;
        rows[1] = group_scales + min_of(scale_row + 1, kNumScaleBlocksN - 1) * kNumKBlocks;
    }

    // The producer's copy (KindTraits::kProducerLoadsScalesB), into `dst` along with the tile's first
    // stage, so the consumers find the scales in shared memory once that stage landed (loaded by the
    // consumers once they knew the tile, their latency came on top of the stage's, with the tensor
    // cores idle, at the start of every tile). Called before the stage's TMA loads: the transaction
    // bytes still pending keep `bar`'s phase from completing before it returns.
    __device__ __forceinline__ static void load_by_producer(const float* sfb, const Tile& tile, float* dst,
                                                            uint64_t* bar) {
        const float* src[2];
        rows(sfb, tile, src);
        constexpr uint32_t kRowBytes = kNumKBlocks * sizeof(float);
        // One bulk copy per row, through the TMA unit like the stage's own loads, where rows are
        // 16-byte aligned; else a 4-byte cp.async per scale, tracked by the barrier.
        if (kRowBytes % 16 == 0 && reinterpret_cast<uint64_t>(sfb) % 16 == 0) {
            ptx::mbarrier_expect_tx(bar, kNumRows * kRowBytes);
            for (uint32_t r = 0; r < kNumRows; ++r)
                ptx::bulk_load(bar, dst + r * kNumKBlocks, src[r], kRowBytes);
        } else {
            for (uint32_t r = 0; r < kNumRows; ++r)
                for (uint32_t i = 0; i < kNumKBlocks; ++i)
                    ptx::cp_async_4(dst + r * kNumKBlocks + i, src[r] + i);
            ptx::cp_async_arrive_on(bar);
        }
    }

    // A consumer warpgroup's own copy, made by its 128 threads as the tile starts into its buffer
    // (number `warpgroup` of those from `smem_sfb` on); returns the buffer once the warpgroup has
    // synchronised on its named barrier, `barrier_base` + `warpgroup`. The buffer and the barrier are
    // computed here, after the rows: computed by the caller ahead of them, they changed ptxas'
    // instruction order.
    __device__ __forceinline__ static const float* load_by_warpgroup(const float* sfb, const Tile& tile,
                                                                     float* smem_sfb, uint32_t warpgroup,
                                                                     uint32_t thread, uint32_t barrier_base) {
        const float* src[2];
        rows(sfb, tile, src);
        float* dst = smem_sfb + warpgroup * kNumScales;
        for (uint32_t i = thread % 128; i < kNumKBlocks; i += 128) {
            dst[i] = __ldg(src[0] + i);
            if constexpr (!kIsUniform)
                dst[kNumKBlocks + i] = __ldg(src[1] + i);
        }
        ptx::named_barrier_sync(barrier_base + warpgroup, 128);
        return dst;
    }

    // The two B scales of k-block `k_block` from a tile's copy: before and after the tile's column
    // groups cross into the next scale block (the same scale for a uniform tile).
    __device__ __forceinline__ static void of_k_block(const float* tile_sfb, uint32_t k_block, float& scale_b0,
                                                      float& scale_b1) {
        scale_b0 = tile_sfb[k_block];
        scale_b1 = kIsUniform ? scale_b0 : tile_sfb[kNumKBlocks + k_block];
    }
};

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/smem.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// The B scales of one FP8 tile, copied to shared memory once per tile: those of its 128-column scale
// block for every k-block, then, when the tile may straddle two blocks, those of the next block (the
// same for the last one). `sfb` is [G, ceil(N / 128), kRowFloats] FP32, the first ceil(K / 128) floats
// of each row the scales. kPaddedRows (the masked kind, whose producer bulk-copies them): rows padded to
// a multiple of 4 floats, so that every row starts 16-byte aligned; the op hands the kernel such a
// padded copy where ceil(K / 128) is not a multiple of 4 (ops/fp8/kernel.py). Otherwise the rows are
// as the user passed them. The tile's copy in shared memory keeps the same row stride.
template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_N, bool kPaddedRows>
struct TileScalesB {
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, 128u);
    static constexpr uint32_t kNumScaleBlocksN = ceil_div(SHAPE_N, 128u);
    // Floats from one row of scales to the next, in `sfb` and in shared memory.
    static constexpr uint32_t kRowFloats = kPaddedRows ? align_up(kNumKBlocks, 4u) : kNumKBlocks;
    // A tile never straddles a 128-column scale block when BLOCK_N divides 128.
    static constexpr bool kIsUniform = 128 % BLOCK_N == 0;
    static constexpr uint32_t kNumRows = kIsUniform ? 1 : 2;
    static constexpr uint32_t kNumScales = kRowFloats * kNumRows;

    // Where the tile's scale rows start in `sfb`.
    __device__ __forceinline__ static void rows(const float* sfb, const Tile& tile, const float* (&rows)[2]) {
        const uint32_t scale_row = tile.n_block * BLOCK_N / 128;
        const float* group_scales = sfb + tile.group * (kNumScaleBlocksN * kRowFloats);
        rows[0] = group_scales + scale_row * kRowFloats;
        rows[1] = group_scales + min_of(scale_row + 1, kNumScaleBlocksN - 1) * kRowFloats;
    }

    // Transaction bytes of the producer's copy of a tile's scales.
    static constexpr uint32_t kProducerTxBytes = kNumScales * sizeof(float);

    // The producer's copy (KindTraits::kProducerLoadsScalesB), into `dst` along with the tile's first
    // stage, so the consumers find the scales in shared memory once that stage landed (loaded by the
    // consumers once they knew the tile, their latency came on top of the stage's, with the tensor
    // cores idle, at the start of every tile). One bulk copy per row, through the TMA unit like the
    // stage's own loads, completing kProducerTxBytes on the stage's barrier `bar`, which the producer
    // armed for them along with the stage's bytes (produce_tiles, FirstStageExtraTxBytes). Padded rows
    // keep every source and destination 16-byte aligned (`sfb` itself is, as the op guarantees).
    __device__ __forceinline__ static void load_by_producer(const float* sfb, const Tile& tile, float* dst,
                                                            uint64_t* bar) {
        static_assert(kPaddedRows, "the producer's bulk copy needs rows padded to 16 bytes");
        constexpr uint32_t kRowBytes = kRowFloats * sizeof(float);
        static_assert(kRowBytes % 16 == 0, "bulk copies move 16-byte multiples between 16-byte-aligned addresses");
        const float* src[2];
        rows(sfb, tile, src);
        for (uint32_t r = 0; r < kNumRows; ++r)
            ptx::bulk_load(bar, dst + r * kRowFloats, src[r], kRowBytes);
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
                dst[kRowFloats + i] = __ldg(src[1] + i);
        }
        ptx::named_barrier_sync(barrier_base + warpgroup, 128);
        return dst;
    }

    // The two B scales of k-block `k_block` from a tile's copy: before and after the tile's column
    // groups cross into the next scale block (the same scale for a uniform tile).
    __device__ __forceinline__ static void of_k_block(const float* tile_sfb, uint32_t k_block, float& scale_b0,
                                                      float& scale_b1) {
        scale_b0 = tile_sfb[k_block];
        scale_b1 = kIsUniform ? scale_b0 : tile_sfb[kRowFloats + k_block];
    }
};

}  // namespace deepgemm

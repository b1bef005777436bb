#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/ptx/global.cuh>

namespace deepgemm {

// One output tile as the scheduler hands it out.
struct Tile {
    // First row of the tile: in A's and D's rows for the dense and contiguous kinds, within the
    // group for the masked kind.
    uint32_t row;
    uint32_t n_block;
    // Expert (B matrix) of the tile; 0 for the dense kind.
    uint32_t group;
    // Rows of the tile, from `row` on, that belong to the group: a prefix of the tile. BLOCK_M for
    // the dense kind (TMA clips the M tail).
    uint32_t num_valid_rows;
};

// `Tile::n_block` of the marker that ends a stream of tiles handed from one role to another.
constexpr uint32_t kNoMoreTiles = 0xffffffffu;

// A tile another thread wrote to shared memory, read word by word: a whole-struct copy let ptxas
// move the consumers' stage index and WGMMA descriptors out of uniform registers.
__device__ __forceinline__ Tile read_tile(const Tile* slot) {
    const volatile uint32_t* words = reinterpret_cast<const volatile uint32_t*>(slot);
    return {words[0], words[1], words[2], words[3]};
}

// Valid rows among a consumer warpgroup's 64 rows of each wave of `tile` (a prefix of them). Kinds
// without KindTraits::kHasInvalidRows count every row as valid (TMA clips the M tail).
template <GemmKind kKind, uint32_t kNumWaves, uint32_t kWaveM>
__device__ __forceinline__ void warpgroup_valid_rows(const Tile& tile, uint32_t warpgroup,
                                                     uint32_t (&num_valid_rows)[kNumWaves]) {
    #pragma unroll
    for (uint32_t w = 0; w < kNumWaves; ++w) {
        const uint32_t first = w * kWaveM + warpgroup * 64;
        num_valid_rows[w] = !KindTraits<kKind>::kHasInvalidRows ? 64
                            : tile.num_valid_rows > first ? min_of(64u, tile.num_valid_rows - first) : 0;
    }
}

// `value` as lane 0 of the warp holds it: for a value every lane computes alike, the broadcast
// tells the compiler it is warp-uniform, so values derived from it can live in uniform registers.
__device__ __forceinline__ uint32_t warp_uniform(uint32_t value) {
    return __shfl_sync(0xffffffffu, value, 0);
}

// Persistent walk over output tiles: CTA b takes tiles b, b + grid, b + 2 * grid, ... The dense and
// ContiguousIndices kinds number the tiles of one [shape_m, N] problem, ContiguousIndices skipping
// tiles whose rows are padding; the ContiguousEnds and Masked kinds number the tiles group after
// group, each group a [rows of the group, N] problem of its own.
//
// Experts of the contiguous layout start at multiples of 128 rows, and within a 128-row aligned
// block the rows of its one expert come first, padding after them. So a ContiguousIndices tile reads
// the first and the last row of each of its 128-row halves, all in one go: the first row names the
// half's expert, and the last row, where it is of the same expert (every block but an expert's
// last), says the whole half is; otherwise a binary search finds where the expert's rows end. The
// consumers then take the tile's valid rows as a count, like every grouped kind (they once read an
// index per row at the start of every tile: a global load's latency with the tensor cores idle).
// A 256-row block may hold two experts: one expert (or padding after the first half) makes one
// 256-row tile; two make two tiles of at most 128 valid rows each, handed out one after the other to
// the same CTA (the second loads the next block's rows too, and computes nothing for them).
//
// Within one problem, tiles are numbered in groups of kNumBlocksPerGroup blocks along one dimension
// (N when kGroupAlongN) so that the CTAs running at the same moment read the same few operand tiles
// and keep them in L2. Within a group, consecutive tile ids step along the grouped dimension; so with
// a 2-CTA cluster (consecutive block ids) multicasting A, the pair shares its m-block as long as
// every group is of even width, which the host guarantees by choosing multicast on A only when the
// number of n-blocks is even (on B: the number of m-blocks). The contiguous kinds multicast A only:
// every problem they walk has an even number of tiles, so the pair's CTAs take their tiles in step,
// and as they share the m-block they split, skip and clip its rows alike (tiles of one expert only).
// Masked A is a 3-D tensor map, loaded per CTA; the dense kind multicasts either operand.
//
// Index values that break the layout contract never lead outside the tensors: experts outside
// [0, num_groups) are skipped, row counts and ends are clamped to shape_m.
//
// Split-K (kSplitK > 1, dense only): each tile's K loop is cut into kSplitK slices of equal length, each
// slice a work unit of its own; the walk hands out slice 0 of every tile, then slice 1, ..., and `split`
// says which slice the tile just handed out is. With kSplitK == 1 none of it exists.
template <GemmKind kKind, uint32_t SHAPE_N, uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumBlocksPerGroup,
          bool kGroupAlongN, uint32_t kSplitK = 1>
struct TileScheduler {
    using Traits = KindTraits<kKind>;
    static constexpr uint32_t kNumNBlocks = ceil_div(SHAPE_N, BLOCK_N);
    static constexpr uint32_t kContiguousAlignment = 128;
    static constexpr bool kWalksGroups = Traits::kWalksGroups;
    static_assert(kNumBlocksPerGroup % 2 == 0, "an even group keeps 2-CTA cluster pairs on one row or column");
    // Per-row indices name a tile's expert by its first row: a tile spans at most two 128-row
    // halves, each of one expert (see above).
    static_assert(!Traits::kReadsRowIndices || BLOCK_M <= 2 * kContiguousAlignment,
                  "a tile named by per-row indices spans at most two aligned expert blocks");
    static constexpr bool kSplitsBlocks = Traits::kReadsRowIndices && BLOCK_M > kContiguousAlignment;
    // Rows of one half of a ContiguousIndices tile: all of a tile up to 128 rows.
    static constexpr uint32_t kHalfRows = kSplitsBlocks ? kContiguousAlignment : BLOCK_M;
    static_assert(kSplitK >= 1 && (kSplitK == 1 || kKind == GemmKind::Dense), "only the dense kind splits K");

    const uint32_t shape_m;
    const uint32_t num_groups;
    const int32_t* const grouped_layout;
    uint32_t next_block;
    // The problem the walk is in: its m-blocks and first tile id; for the group-walking kinds also
    // its group, first row, rows, and the previous group's raw end (ContiguousEnds).
    uint32_t num_m_blocks = 0;
    uint32_t first_block = 0;
    uint32_t group = 0;
    uint32_t group_row = 0;
    uint32_t group_rows = 0;
    int32_t previous_end = 0;
    // ContiguousIndices with 256-row blocks: the second half of the block just handed out, when it
    // holds another expert and so needs a tile of its own (group kNoPendingHalf: none).
    static constexpr uint32_t kNoPendingHalf = 0xffffffffu;
    Tile pending_half{0, 0, kNoPendingHalf, 0};
    // The K slice of the tile `next` handed out last (split-K).
    uint32_t split = 0;

    __device__ TileScheduler(uint32_t shape_m, uint32_t num_groups, const int32_t* grouped_layout)
        : shape_m(shape_m), num_groups(num_groups), grouped_layout(grouped_layout), next_block(blockIdx.x) {
        if constexpr (kWalksGroups)
            enter_group();
        else
            num_m_blocks = ceil_div(shape_m, BLOCK_M);
    }

    // Starts fetching the layout entries this CTA's first `next` reads (the first group's size or
    // end; the first tile's indices), so that their latency passes during the kernel's set-up rather
    // than before its first loads. Called by the scheduling thread before the pipeline starts.
    __device__ static void prefetch_first_reads(uint32_t shape_m, const int32_t* grouped_layout) {
        if constexpr (kWalksGroups) {
            ptx::prefetch_l1(grouped_layout);
        } else if constexpr (Traits::kReadsRowIndices) {
            const uint32_t num_m_blocks = ceil_div(shape_m, BLOCK_M);
            if (blockIdx.x >= num_m_blocks * kNumNBlocks)
                return;
            uint32_t m_block, n_block;
            tile_blocks(blockIdx.x, num_m_blocks, m_block, n_block);
            // The first and last index of each half, as `resolve_indexed_tile` reads them.
            const uint32_t end = min_of((m_block + 1) * BLOCK_M, shape_m);
            for (uint32_t row = m_block * BLOCK_M; row < end; row += kHalfRows) {
                ptx::prefetch_l1(grouped_layout + row);
                ptx::prefetch_l1(grouped_layout + min_of(row + kHalfRows, shape_m) - 1);
            }
        }
    }

    __device__ bool next(Tile& tile) {
        if constexpr (kSplitsBlocks) {
            if (pending_half.group != kNoPendingHalf) {
                tile = pending_half;
                pending_half.group = kNoPendingHalf;
                return true;
            }
        }
        while (true) {
            const uint32_t block = next_block;
            if constexpr (kWalksGroups) {
                // Move on to the group holding `block`; empty groups hold no tiles.
                while (block - first_block >= num_m_blocks * kNumNBlocks) {
                    first_block += num_m_blocks * kNumNBlocks;
                    if (++group >= num_groups)
                        return false;
                    enter_group();
                }
            } else if (block >= num_m_blocks * kNumNBlocks * kSplitK) {
                return false;
            }
            next_block += gridDim.x;

            uint32_t m_block;
            if constexpr (kSplitK > 1) {
                const uint32_t num_tiles = num_m_blocks * kNumNBlocks;
                split = block / num_tiles;
                tile_blocks(block - split * num_tiles, num_m_blocks, m_block, tile.n_block);
            } else {
                tile_blocks(block - first_block, num_m_blocks, m_block, tile.n_block);
            }
            tile.row = group_row + m_block * BLOCK_M;
            tile.group = group;
            tile.num_valid_rows = kWalksGroups ? min_of(BLOCK_M, group_rows - m_block * BLOCK_M) : BLOCK_M;
            if constexpr (Traits::kReadsRowIndices) {
                if (!resolve_indexed_tile(tile))
                    continue;  // padding (-1), or indices out of range: nothing to compute
            }
            return true;
        }
    }

private:
    // ContiguousIndices: sets `tile`'s expert and valid rows from the per-row indices (see above), and
    // with 256-row tiles queues the second half as a tile of its own when it holds another expert.
    // False when the tile holds no expert's rows.
    __device__ bool resolve_indexed_tile(Tile& tile) {
        // Every index the tile needs, loaded before any is used: one latency, not several.
        const uint32_t row = tile.row, half_row = row + kHalfRows;
        const int32_t first = __ldg(grouped_layout + row);
        const int32_t last = __ldg(grouped_layout + min_of(half_row, shape_m) - 1);
        int32_t half_first = -1, half_last = -1;
        if (kSplitsBlocks && half_row < shape_m) {
            half_first = __ldg(grouped_layout + half_row);
            half_last = __ldg(grouped_layout + min_of(half_row + kHalfRows, shape_m) - 1);
        }
        const uint32_t group = static_cast<uint32_t>(first), half_group = static_cast<uint32_t>(half_first);
        if (group < num_groups) {
            const uint32_t rows = expert_rows(row, group, last);
            tile.group = group;
            tile.num_valid_rows = rows;
            if (kSplitsBlocks && half_group < num_groups) {
                const uint32_t half_rows = expert_rows(half_row, half_group, half_last);
                if (half_group == group) {
                    // One expert across both halves; its rows are a prefix of the tile only while the
                    // first half is full (a contract broken there ends the tile's rows early).
                    tile.num_valid_rows = rows == kHalfRows ? rows + half_rows : rows;
                } else {
                    pending_half = {half_row, tile.n_block, half_group, half_rows};
                }
            }
            return true;
        }
        if (kSplitsBlocks && half_group < num_groups) {  // the first half is padding
            tile.row = half_row;
            tile.group = half_group;
            tile.num_valid_rows = expert_rows(half_row, half_group, half_last);
            return true;
        }
        return false;
    }

    // Rows of expert `group` from `row` (its first, the index of which is `group`) to the end of
    // its half (at most kHalfRows rows, clamped to shape_m), given the index of the half's last row:
    // all of them when that is the same expert; else where its rows end, by binary search over the
    // rows between (the layout puts the expert's rows first; for indices that break it the result
    // still lies within the half).
    __device__ uint32_t expert_rows(uint32_t row, uint32_t group, int32_t last_index) const {
        const uint32_t end = min_of(row + kHalfRows, shape_m);
        if (static_cast<uint32_t>(last_index) == group)
            return end - row;
        // Rows [row, low) are of the expert; row `high` is not.
        uint32_t low = row + 1, high = end - 1;
        while (low < high) {
            const uint32_t middle = (low + high) / 2;
            if (static_cast<uint32_t>(__ldg(grouped_layout + middle)) == group)
                low = middle + 1;
            else
                high = middle;
        }
        return low - row;
    }

    // Reads the size of `group` (when there is one left) and where its rows start.
    __device__ void enter_group() {
        if (group >= num_groups) {
            num_m_blocks = 0;
            return;
        }
        const int32_t value = __ldg(grouped_layout + group);
        if constexpr (Traits::kHasGroupDim) {
            group_row = 0;
            group_rows = min_of(static_cast<uint32_t>(max_of(value, 0)), shape_m);
        } else {
            // Rows [align_up(previous end, 128), end), clamped to the tensor.
            const uint32_t start = min_of(align_up(static_cast<uint32_t>(max_of(previous_end, 0)),
                                                   kContiguousAlignment), shape_m);
            const uint32_t end = min_of(static_cast<uint32_t>(max_of(value, 0)), shape_m);
            group_row = start;
            group_rows = end > start ? end - start : 0;
            previous_end = value;
        }
        num_m_blocks = ceil_div(group_rows, BLOCK_M);
    }

    // The m-block and n-block of tile `block` of a problem of `num_m_blocks` m-blocks.
    __device__ static void tile_blocks(uint32_t block, uint32_t num_m_blocks, uint32_t& m_block, uint32_t& n_block) {
        if constexpr (kGroupAlongN)
            rasterise(block, kNumNBlocks, num_m_blocks, n_block, m_block);
        else
            rasterise(block, num_m_blocks, kNumNBlocks, m_block, n_block);
    }

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

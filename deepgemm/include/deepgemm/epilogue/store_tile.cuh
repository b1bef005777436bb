#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/smem.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// Writes BLOCK_M x BLOCK_N of an FP32 accumulator tile (the whole tile, or one column chunk of it:
// see store_tile) to shared memory as BF16, FP16 or FP32 and stores it to global memory with TMA.
//
// The staged columns are kept as column slabs of kSwizzleBytes-wide rows carrying the TMA swizzle of
// that width (one TMA store per slab and 64-row WGMMA slice, so each consumer warpgroup stores its
// own). Swizzling makes the accumulator-layout writes conflict-free: the 8 rows a warp writes at once
// land in 8 different 16-byte chunks. With kSwizzleBytes == 0 the staged columns are one unswizzled
// slab (only for widths no swizzle mode divides).
template <uint32_t BLOCK_M, uint32_t BLOCK_N, OutType kOutType, uint32_t kSwizzleBytes>
struct TileStore {
    static constexpr uint32_t kElemBytes = kOutType == OutType::FP32 ? 4 : 2;
    static constexpr uint32_t kRowBytes = kSwizzleBytes == 0 ? BLOCK_N * kElemBytes : kSwizzleBytes;
    static constexpr uint32_t kSlabCols = kRowBytes / kElemBytes;
    static constexpr uint32_t kNumSlabs = BLOCK_N / kSlabCols;
    static constexpr uint32_t kSlabBytes = BLOCK_M * kRowBytes;

    static_assert(kSwizzleBytes == 0 || kSwizzleBytes == 32 || kSwizzleBytes == 64 || kSwizzleBytes == 128,
                  "TMA swizzle spans are 32, 64 or 128 bytes");
    static_assert(BLOCK_N % kSlabCols == 0, "the swizzle width must divide the tile width");
    static_assert(kRowBytes % 16 == 0, "TMA boxes are a multiple of 16 bytes wide");
    static_assert(kSlabBytes % 1024 == 0, "each slab starts on a swizzle-pattern boundary");

    // Byte offset of (row, col) in the slabbed, swizzled tile: the 16-byte chunk index inside a
    // 128-byte line is XORed with the line index modulo the pattern length, as TMA does.
    __device__ __forceinline__ static uint32_t offset(uint32_t row, uint32_t col) {
        const uint32_t col_bytes = col * kElemBytes;
        const uint32_t slab = col_bytes / kRowBytes;
        uint32_t off = row * kRowBytes + col_bytes % kRowBytes;
        if constexpr (kSwizzleBytes > 0)
            off ^= ((off >> 7) & (kSwizzleBytes / 16 - 1)) << 4;
        return slab * kSlabBytes + off;
    }

    // Two accumulator values (the lower column first) as a packed pair of 16-bit outputs.
    __device__ __forceinline__ static uint32_t pack(float x, float y) {
        return kOutType == OutType::FP16 ? ptx::pack_f16x2(x, y) : ptx::pack_bf16x2(x, y);
    }

    // One thread's share of BLOCK_N columns of a 64-row WGMMA accumulator (rows `row` and `row + 8`,
    // columns 8 * i + 2 * quad and the next, as laid out by the WGMMA wrappers), starting at its
    // register `first` (a multiple of 4: accumulator column first / 2); so row % 8 is lane / 4.
    // Called by whole warps.
    template <uint32_t kNumAccum>
    __device__ __forceinline__ static void write_fragment(uint8_t* smem_d, uint32_t row, uint32_t quad,
                                                          const float (&accum)[kNumAccum], uint32_t first = 0) {
        static_assert(kNumAccum * 2 >= BLOCK_N, "the accumulator covers the staged columns");
        constexpr uint32_t kNumGroups = BLOCK_N / 8;
        const uint32_t base = ptx::smem_addr(smem_d);
        if constexpr (kOutType == OutType::FP32) {
            #pragma unroll
            for (uint32_t i = 0; i < kNumGroups; ++i)
                #pragma unroll
                for (uint32_t half = 0; half < 2; ++half)
                    ptx::st_shared_f32x2(base + offset(row + half * 8, i * 8 + quad * 2),
                                         accum[first + i * 4 + half * 2], accum[first + i * 4 + half * 2 + 1]);
        } else {
            // 16-bit outputs go out with stmatrix, a quarter of the store instructions of one 32-bit
            // store per pair: each 8-column group of the warp's 16 rows is two 8x8 matrices (rows
            // 0-7 and 8-15), so one x4 writes two groups. Lane l addresses row l % 8 of matrix l / 8:
            // rows + 8 for the odd matrices, the second group for matrices 2 and 3. The lane is rebuilt
            // from `row` (row % 8 is lane / 4) and `quad`: taking it from the thread index kept that
            // live through the k-loop, which then recomputed `row` in every k-block.
            const uint32_t lane = row % 8 * 4 + quad;
            const uint32_t matrix_row = row - lane / 4 + lane / 8 % 2 * 8 + lane % 8;
            const uint32_t matrix_group = lane / 16;
            #pragma unroll
            for (uint32_t i = 0; i + 1 < kNumGroups; i += 2) {
                const float* a = accum + first + i * 4;
                ptx::stmatrix_x4(base + offset(matrix_row, (i + matrix_group) * 8), pack(a[0], a[1]), pack(a[2], a[3]),
                                 pack(a[4], a[5]), pack(a[6], a[7]));
            }
            if constexpr (kNumGroups % 2 == 1) {
                const float* a = accum + first + (kNumGroups - 1) * 4;
                ptx::stmatrix_x2(base + offset(matrix_row, (kNumGroups - 1) * 8), pack(a[0], a[1]), pack(a[2], a[3]));
            }
        }
    }

    // Stores the 64 rows starting at tile row `row` (a WGMMA's worth, one TMA box per slab), issued
    // by one thread after every writer of those rows fenced and synchronised. TMA clips rows and
    // columns past the tensor's end; slabs wholly past column `shape_n` are skipped. With a 3-D
    // tensor map (kIs3D: [groups, rows, N]) the box goes to group `group`. With kReduceAdd the box is
    // added to D instead of overwriting it (TMA reduce-add). The caller commits the bulk group.
    template <bool kIs3D, bool kReduceAdd = false>
    __device__ __forceinline__ static void issue_store(const void* tmap_d, const uint8_t* smem_d, uint32_t row,
                                                       uint32_t m_offset, uint32_t n_offset, uint32_t shape_n,
                                                       uint32_t group) {
        #pragma unroll
        for (uint32_t s = 0; s < kNumSlabs; ++s) {
            if (n_offset + s * kSlabCols < shape_n) {
                const uint8_t* src = smem_d + s * kSlabBytes + row * kRowBytes;
                if constexpr (kIs3D && kReduceAdd)
                    ptx::tma_reduce_add_3d(tmap_d, src, n_offset + s * kSlabCols, m_offset, group);
                else if constexpr (kIs3D)
                    ptx::tma_store_3d(tmap_d, src, n_offset + s * kSlabCols, m_offset, group);
                else if constexpr (kReduceAdd)
                    ptx::tma_reduce_add_2d(tmap_d, src, n_offset + s * kSlabCols, m_offset);
                else
                    ptx::tma_store_2d(tmap_d, src, n_offset + s * kSlabCols, m_offset);
            }
        }
    }

    // Copies tile rows [row, row + num_rows) to global memory with plain 16-byte stores, for tiles
    // whose valid rows end inside a TMA box: a TMA store would also overwrite the rows after them,
    // which belong to padding or to no group and must stay untouched. `d_row` points at the first
    // element of the destination row of tile row `row`; `num_cols` columns are in bounds. Called by
    // all 128 threads of the warpgroup that wrote the rows, after its barrier.
    __device__ __forceinline__ static void copy_rows(const uint8_t* smem_d, uint32_t row, uint32_t num_rows,
                                                     uint8_t* d_row, uint64_t d_row_bytes, uint32_t num_cols,
                                                     uint32_t thread_in_warpgroup) {
        constexpr uint32_t kChunksPerRow = BLOCK_N * kElemBytes / 16;
        constexpr uint32_t kColsPerChunk = 16 / kElemBytes;
        for (uint32_t i = thread_in_warpgroup; i < num_rows * kChunksPerRow; i += 128) {
            const uint32_t r = i / kChunksPerRow, col = i % kChunksPerRow * kColsPerChunk;
            if (col < num_cols) {
                // A 16-byte chunk is the unit the swizzle permutes, so it stays contiguous.
                const Bytes16 value = *reinterpret_cast<const Bytes16*>(smem_d + offset(row + r, col));
                *reinterpret_cast<Bytes16*>(d_row + r * d_row_bytes + col * kElemBytes) = value;
            }
        }
    }

    // Stores a warpgroup's rows of every wave of the staged columns (rows w * kWaveM + warpgroup * 64
    // + [0, 64), landing at column `n_offset` of D): whole 64-row boxes by TMA, issued by the
    // warpgroup's first thread; a wave whose valid rows end inside its box with plain stores by all
    // 128 threads (see copy_rows; only kinds with KindTraits::kHasInvalidRows have such waves). Kinds
    // with a group dimension (the masked one) store through a 3-D [groups, rows, N] map and address
    // `d` by group. kReduceAdd adds the TMA boxes to D (plain stores never add: with it, every wave's
    // rows must be valid). The caller commits the group.
    template <GemmKind kKind, uint32_t kNumWaves, uint32_t kWaveM, bool kReduceAdd = false>
    __device__ __forceinline__ static void store_waves(const void* tmap_d, const uint8_t* smem_d, const Tile& tile,
                                                       uint32_t n_offset, const uint32_t (&num_valid_rows)[kNumWaves],
                                                       uint32_t warpgroup, uint32_t thread_in_warpgroup,
                                                       uint8_t* d, uint64_t d_row_bytes, uint64_t d_group_bytes,
                                                       uint32_t shape_n) {
        using Traits = KindTraits<kKind>;
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w) {
            const uint32_t row = w * kWaveM + warpgroup * 64;
            if (!Traits::kHasInvalidRows || num_valid_rows[w] == 64) {
                if (thread_in_warpgroup == 0)
                    issue_store<Traits::kHasGroupDim, kReduceAdd>(tmap_d, smem_d, row, tile.row + row, n_offset,
                                                                  shape_n, tile.group);
            } else if (num_valid_rows[w] > 0) {
                uint8_t* d_row = d + tile.group * d_group_bytes + (tile.row + row) * d_row_bytes +
                                 n_offset * kElemBytes;
                copy_rows(smem_d, row, num_valid_rows[w], d_row, d_row_bytes, shape_n - n_offset,
                          thread_in_warpgroup);
            }
        }
    }
};

// The epilogue of one consumer warpgroup: its rows of every wave of the accumulator tile go to
// shared memory as kOutType and from there to D by TMA, in kNumChunks column chunks through a staging
// buffer of BLOCK_M x BLOCK_N / kNumChunks (a smaller buffer leaves room for more pipeline stages).
// Each chunk first waits until the previous store (the previous chunk's, or the previous tile's, left
// in flight to overlap this tile's mainloop) has finished reading the buffer. `row_in_wave` is the
// thread's first accumulator row; `barrier_id` a named barrier of the warpgroup's 128 threads. With
// kReduceAdd the tile is added to D (D += tile) instead of stored (see store_waves).
template <uint32_t BLOCK_M, uint32_t BLOCK_N, uint32_t kNumChunks, OutType kOutType, uint32_t kSwizzleBytes,
          GemmKind kKind, uint32_t kNumWaves, uint32_t kWaveM, uint32_t kNumAccum,
          bool kReduceAdd = false>
__device__ __forceinline__ void store_tile(const void* tmap_d, uint8_t* smem_d, const Tile& tile,
                                           const uint32_t (&num_valid_rows)[kNumWaves],
                                           const float (&accum)[kNumWaves][kNumAccum], uint32_t warpgroup,
                                           uint32_t thread_in_warpgroup, uint32_t row_in_wave, uint32_t barrier_id,
                                           uint8_t* d, uint64_t d_row_bytes, uint64_t d_group_bytes,
                                           uint32_t shape_n) {
    constexpr uint32_t kChunkCols = BLOCK_N / kNumChunks;
    using Staging = TileStore<BLOCK_M, kChunkCols, kOutType, kSwizzleBytes>;
    static_assert(BLOCK_N % kNumChunks == 0 && kChunkCols % 8 == 0, "chunks are whole 8-column groups");
    const bool is_store_thread = thread_in_warpgroup == 0;
    #pragma unroll
    for (uint32_t chunk = 0; chunk < kNumChunks; ++chunk) {
        const uint32_t n_offset = tile.n_block * BLOCK_N + chunk * kChunkCols;
        // In the last tile of a row, a chunk may start past N: nothing of it is stored (and the
        // column count copy_rows is given would wrap around).
        if (chunk > 0 && n_offset >= shape_n)
            break;
        if (is_store_thread)
            ptx::tma_store_wait<0>();
        ptx::named_barrier_sync(barrier_id, 128);
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w)
            Staging::write_fragment(smem_d, w * kWaveM + row_in_wave, thread_in_warpgroup % 4, accum[w],
                                    chunk * kChunkCols / 2);
        ptx::fence_proxy_async_shared();
        ptx::named_barrier_sync(barrier_id, 128);
        Staging::template store_waves<kKind, kNumWaves, kWaveM, kReduceAdd>(
            tmap_d, smem_d, tile, n_offset, num_valid_rows, warpgroup,
            thread_in_warpgroup, d, d_row_bytes, d_group_bytes, shape_n);
        if (is_store_thread)
            ptx::tma_store_commit();
    }
}

// Adds C[row, col] (row-major, `c_row_bytes` apart, elements of kOutType) to one thread's share of
// a 64 x kNumAccum*2 WGMMA accumulator: rows `row` and `row + 8` from `c` on, columns 8 * i +
// 2 * quad (+ 1). Rows from `num_rows` and columns from `num_cols` on are outside C and skipped.
template <OutType kOutType, uint32_t kNumAccum>
__device__ __forceinline__ void add_source(float (&accum)[kNumAccum], const uint8_t* c, uint64_t c_row_bytes,
                                           uint32_t row, uint32_t quad, uint32_t num_rows, uint32_t num_cols) {
    constexpr uint32_t kElemBytes = kOutType == OutType::FP32 ? 4 : 2;
    #pragma unroll
    for (uint32_t half = 0; half < 2; ++half) {
        if (row + half * 8 >= num_rows)
            continue;
        const uint8_t* c_row = c + (row + half * 8) * c_row_bytes;
        #pragma unroll
        for (uint32_t i = 0; i < kNumAccum / 4; ++i) {
            const uint32_t col = i * 8 + quad * 2;
            // Columns come in pairs and every width is even: a pair is wholly inside or outside.
            if (col >= num_cols)
                continue;
            float x, y;
            if constexpr (kOutType == OutType::FP32) {
                const Float2 pair = *reinterpret_cast<const Float2*>(c_row + col * kElemBytes);
                x = pair.x, y = pair.y;
            } else {
                const uint32_t packed = *reinterpret_cast<const uint32_t*>(c_row + col * kElemBytes);
                if constexpr (kOutType == OutType::FP16)
                    ptx::unpack_f16x2(packed, x, y);
                else
                    ptx::unpack_bf16x2(packed, x, y);
            }
            accum[i * 4 + half * 2] += x;
            accum[i * 4 + half * 2 + 1] += y;
        }
    }
}

}  // namespace deepgemm

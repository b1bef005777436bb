#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/scheduler/tile_scheduler.cuh>

namespace deepgemm {

// What the kernels whose tensor cores keep the sums across k-blocks (the 16-bit, INT8 and TF32 ones:
// no promotion step, see impls/unpromoted/kernel.cuh) share of their layout: the thread roles and the
// shared memory [D tile][A stages][B stages][full | empty barriers][tile per stage (kinds that hand off
// tiles)], mirrored on the host by heuristics/families/unpromoted.py. A family's layout derives from it
// and adds its k-block count and its own limits on BLOCK_N. A k-block is one 128-byte swizzle line of K
// per operand row (BLOCK_K elements of kElemBytes); an MN-major operand (16-bit only) arrives in chunks
// of 64 MN-elements by BLOCK_K lines.
template <uint32_t BLOCK_M_, uint32_t BLOCK_N_, uint32_t BLOCK_K_, uint32_t kElemBytes, uint32_t kNumStages_,
          uint32_t kOutBytes, uint32_t kNumDChunks, bool kHasTileSlots, bool kIsAMNMajor_ = false,
          bool kIsBMNMajor_ = false>
struct UnpromotedLayout {
    static constexpr uint32_t BLOCK_M = BLOCK_M_;
    static constexpr uint32_t BLOCK_N = BLOCK_N_;
    static constexpr uint32_t BLOCK_K = BLOCK_K_;
    static constexpr uint32_t kNumStages = kNumStages_;
    static constexpr bool kIsAMNMajor = kIsAMNMajor_;
    static constexpr bool kIsBMNMajor = kIsBMNMajor_;
    // MN-major tiles are loaded in 64-wide chunks (a swizzled TMA box spans at most 128 bytes).
    static constexpr uint32_t kChunk = 64;
    static constexpr uint32_t kChunkBytes = kChunk * BLOCK_K * kElemBytes;
    static constexpr uint32_t kNumMathWarpgroups = BLOCK_M == 64 ? 1 : 2;
    static constexpr uint32_t kNumMathThreads = 128 * kNumMathWarpgroups;
    static constexpr uint32_t kNumThreads = kNumMathThreads + 128;
    // Each consumer warpgroup owns 64 rows of a "wave"; BLOCK_M = 256 runs two waves per k-block.
    static constexpr uint32_t kWaveM = 64 * kNumMathWarpgroups;
    static constexpr uint32_t kNumWaves = BLOCK_M / kWaveM;

    // The D tile is staged in kNumDChunks column chunks (see store_tile).
    static constexpr uint32_t kSmemDBytes = align_up(BLOCK_M * BLOCK_N / kNumDChunks * kOutBytes, 1024u);
    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K * kElemBytes;
    static constexpr uint32_t kSmemBBytes = BLOCK_N * BLOCK_K * kElemBytes;
    static constexpr uint32_t kSmemTileBytes = kHasTileSlots ? kNumStages * sizeof(Tile) : 0;
    static constexpr uint32_t kSmemBytes =
        kSmemDBytes + kNumStages * (kSmemABytes + kSmemBBytes) + kNumStages * 2 * 8 + kSmemTileBytes;

    static_assert(BLOCK_K * kElemBytes == 128, "a k-block is one 128-byte swizzle line of K");
    static_assert(BLOCK_M == 64 || BLOCK_M == 128 || BLOCK_M == 256, "BLOCK_M is 64, 128 or 256");
    static_assert(!kIsBMNMajor || BLOCK_N % kChunk == 0, "an N-major B tile is whole 64-column chunks");
    static_assert(kSmemBBytes % 1024 == 0, "128B-swizzled tiles must stay 1024-byte aligned");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");
};

}  // namespace deepgemm

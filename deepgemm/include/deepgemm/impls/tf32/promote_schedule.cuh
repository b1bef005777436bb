#pragma once

#include <deepgemm/common/types.cuh>

namespace deepgemm {

// When a 3xTF32 tile's k-blocks are promoted: which accumulator set each k-block's WGMMAs sum into, how
// many WGMMA groups may stay in flight after it, and which sets are added to the FP32 total then.
// Host and device, so the CPU test replays exactly these decisions (tests/ops/test_tf32_promote_schedule.py).
//
// The K loop runs in spans of straight-line code that start and end with no WGMMA in flight: ptxas
// tracks which registers an in-flight WGMMA writes only through straight-line code (a set in flight
// across a loop's back edge made it serialise every WGMMA, as in the FP8 kernel's two-set loop). A
// span's k-blocks form chunks of kPromoteEvery (the span's last chunk may be shorter: the tail of the
// K loop); chunk j of a span sums into set j % kPromoteSets, its first k-block overwriting the set.
// - One set: a span is one chunk; its last k-block waits for all WGMMAs, then the set is promoted
//   while the tensor cores idle (but for the other consumer warpgroup's WGMMAs).
// - Two sets: chunk j's first k-block is issued, then the wait leaves it in flight and chunk j - 1's
//   set (complete by then) is promoted while it runs; only the span's last chunk is promoted after a
//   full wait. Spans of 4 chunks (and at least 8 k-blocks) promote one chunk in 4 (8) exposed.
// Every k-block but a span's first waits with one group (its own) in flight, so k-block i - 1's stage is
// freed once k-block i's WGMMAs are issued; a span's last k-block then waits for its own too.
template <uint32_t kNumKBlocks, uint32_t kPromoteEvery, uint32_t kPromoteSets>
struct Tf32PromoteSchedule {
    static_assert(kPromoteEvery == 1 || kPromoteEvery == 2 || kPromoteEvery == 4,
                  "3xTF32 promotes every 1, 2 or 4 k-blocks");
    static_assert(kPromoteSets == 1 || kPromoteSets == 2, "one accumulator set, or two used alternately");
    static_assert(kNumKBlocks > 0, "a tile runs at least one k-block");

    static constexpr uint32_t kSpanKBlocks =
        kPromoteSets == 1 ? kPromoteEvery : (4 * kPromoteEvery < 8 ? 8 : 4 * kPromoteEvery);
    static constexpr uint32_t kNumFullSpans = kNumKBlocks / kSpanKBlocks;
    static constexpr uint32_t kTailKBlocks = kNumKBlocks % kSpanKBlocks;

    // The set k-block i of a span sums into.
    __host__ __device__ static constexpr uint32_t set_of(uint32_t i) { return i / kPromoteEvery % kPromoteSets; }

    // K-block i of a span overwrites its set rather than adding to it.
    __host__ __device__ static constexpr bool starts_chunk(uint32_t i) { return i % kPromoteEvery == 0; }

    static constexpr uint32_t kNoSet = 0xFFFFFFFFu;

    // Once k-block i's WGMMAs are issued and the older ones retired: the set whose chunk completed
    // before k-block i, promoted while k-block i runs (two sets), or kNoSet.
    __host__ __device__ static constexpr uint32_t promoted_before(uint32_t i) {
        return kPromoteSets == 2 && i > 0 && starts_chunk(i) ? set_of(i - 1) : kNoSet;
    }

    // The set promoted after the full wait that ends a span of `len` with k-block i, or kNoSet.
    __host__ __device__ static constexpr uint32_t promoted_at_end(uint32_t i, uint32_t len) {
        return i + 1 == len ? set_of(i) : kNoSet;
    }
};

}  // namespace deepgemm

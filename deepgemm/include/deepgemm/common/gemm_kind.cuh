#pragma once

#include <deepgemm/common/types.cuh>

namespace deepgemm {

// Which problem one kernel instance solves. All kinds share the pipeline; they differ in how the
// scheduler enumerates tiles and where a tile's rows and its B matrix come from.
enum class GemmKind {
    // One GEMM: D[M, N] = A[M, K] * B[N, K]^T.
    Dense,
    // MoE, contiguous layout: A[M_sum, K] holds every expert's rows, each expert starting at a
    // multiple of 128; an int32 per row names its expert (-1: padding). B is [G, N, K].
    ContiguousIndices,
    // The same layout described by G running row ends: expert g owns rows
    // [align_up(ends[g - 1], 128), ends[g]).
    ContiguousEnds,
    // MoE, masked layout: A[G, max_m, K], D[G, max_m, N]; only the first masked_m[g] rows of
    // group g are valid. B is [G, N, K].
    Masked,
};

// Every choice that depends on the GemmKind, in one place: the kernels, the scheduler, the stage
// pipeline and the epilogue ask these instead of comparing kinds themselves.
template <GemmKind kKind>
struct KindTraits {
    // An MoE GEMM: B is [G, N, K], read through one [G * N, K] tensor map (the experts' matrices lie
    // back to back), and each tile names its expert.
    static constexpr bool kIsGrouped = kKind != GemmKind::Dense;

    // How the scheduler numbers tiles. Dense and ContiguousIndices: the tiles of one [shape_m, N]
    // problem, ContiguousIndices naming a tile's expert by per-row indices; ContiguousEnds and Masked:
    // group after group, each group a problem of its own.
    static constexpr bool kReadsRowIndices = kKind == GemmKind::ContiguousIndices;
    static constexpr bool kWalksGroups = kKind == GemmKind::ContiguousEnds || kKind == GemmKind::Masked;

    // A, its scales and D carry a group dimension ([G, max_m, ...]): they are 3-D tensor maps, a
    // tile's rows count from its group's first row, and the layout gives each group's row count.
    static constexpr bool kHasGroupDim = kKind == GemmKind::Masked;

    // A tile's valid rows may end before the tile does (padding rows, rows past masked_m): the
    // consumers count them per wave, run a guarded k-loop (no WGMMAs for a wave with none) for tiles
    // whose last wave has none, and store a 64-row box that holds both with plain stores, so that
    // rows outside every group stay untouched.
    static constexpr bool kHasInvalidRows = kIsGrouped;

    // The producer hands each tile to the consumers through its first stage (see pipeline/stages.cuh):
    // the consumers then run no scheduler of their own.
    static constexpr bool kHandsOffTiles = kIsGrouped;
    // The scheduler the consumers construct: their own walk for the dense kind; for the others a
    // stand-in they never ask.
    static constexpr GemmKind kConsumerSchedulerKind = kHandsOffTiles ? GemmKind::Dense : kKind;

    // FP8: the producer copies a tile's B scales into shared memory along with its first stage; for
    // the other kinds each consumer warpgroup loads its own copy as the tile starts.
    static constexpr bool kProducerLoadsScalesB = kKind == GemmKind::Masked;

    // Which operand a 2-CTA cluster may share by TMA multicast. A cluster pair shares its m-block,
    // hence its expert, in the contiguous kinds too: both CTAs read the same A rows
    // (scheduler/tile_scheduler.cuh); each loads its own B tile. Masked A is a 3-D tensor map, loaded
    // per CTA.
    static constexpr bool kMayMulticastA = kKind != GemmKind::Masked;
    static constexpr bool kMayMulticastB = kKind == GemmKind::Dense;
    static constexpr bool allows_multicast(uint32_t num_tma_multicast, bool is_multicast_on_a) {
        return num_tma_multicast == 1 || (is_multicast_on_a ? kMayMulticastA : kMayMulticastB);
    }
};

}  // namespace deepgemm

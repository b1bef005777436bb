#pragma once

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

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/wonly/dequant.cuh>
#include <deepgemm/impls/wonly/epilogue.cuh>
#include <deepgemm/impls/wonly/mainloop.cuh>
#include <deepgemm/impls/wonly/schedule.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/tma.cuh>
#include <deepgemm/ptx/warpgroup.cuh>

// Weight-only mixed precision: D[M, N] = A[M, K] * W[N, K]^T with BF16 / FP16 activations A and
// INT8 or INT4 weights W = (Q - Z) * S, S one scale per row per K group (a multiple of 64 columns,
// or the whole row), Z a zero point per row and group (INT4 with zero points) or the symmetric
// midpoint. FP32 accumulation in the tensor cores.
//
// The weights sit on the WGMMA's 64-row (M) side and the tokens on its N side ("swap AB"): at decode
// sizes a handful of tokens fill an m64n8 instruction instead of wasting a 64-row tile, and the
// kernel's time is the weights' bytes. A producer warpgroup streams the packed weight slabs
// (impls/wonly/dequant.cuh) and the activation tiles (128B-swizzled, K-major) through a ring of
// stages with TMA; each consumer warpgroup dequantises its 64 weight rows of a k-block from shared
// memory straight into A-operand registers and runs register-A WGMMAs against the activation tile,
// overlapping the next k-blocks' dequantisation with earlier k-blocks' WGMMAs. Dense grids are
// persistent over units of one K range (split) of one tile (impls/wonly/schedule.cuh); with
// kNumSplits > 1 the last CTA to finish a tile's ranges adds the others' partial sums
// (impls/wonly/epilogue.cuh).
namespace deepgemm {

template <uint32_t SHAPE_N_, uint32_t SHAPE_K, uint32_t BLOCK_M_, uint32_t kNumMathWarpgroups, uint32_t kNumStages_,
          uint32_t kWeightBits_, uint32_t kGroupKBlocks_, uint32_t kNumSplits>
struct WonlyLayout {
    static constexpr uint32_t SHAPE_N = SHAPE_N_;
    static constexpr uint32_t BLOCK_M = BLOCK_M_;  // tokens per tile: the WGMMA's N
    static constexpr uint32_t BLOCK_N = 64 * kNumMathWarpgroups;  // weight rows per tile
    static constexpr uint32_t BLOCK_K = 64;
    static constexpr uint32_t kNumStages = kNumStages_;
    static constexpr uint32_t kWeightBits = kWeightBits_;
    static constexpr uint32_t kNumMathThreads = 128 * kNumMathWarpgroups;
    static constexpr uint32_t kNumThreads = kNumMathThreads + 128;
    static constexpr uint32_t kNumKBlocks = ceil_div(SHAPE_K, BLOCK_K);
    static constexpr uint32_t kNumNBlocks = ceil_div(SHAPE_N, BLOCK_N);
    // K groups of the scales, in k-blocks; a per-row scale is one group over all of K.
    static constexpr uint32_t kGroupKBlocks = kGroupKBlocks_;
    static constexpr uint32_t kNumGroupsK = ceil_div(kNumKBlocks, kGroupKBlocks);
    // Slabs of 16 weight rows: N padded to 16 (the packed layout's rows).
    static constexpr uint32_t kNumSlabs = BLOCK_N / WeightSlab<kWeightBits>::kRows;
    static constexpr uint32_t kNumSlabsPerExpert = ceil_div(SHAPE_N, WeightSlab<kWeightBits>::kRows);

    static constexpr uint32_t kSmemABytes = BLOCK_M * BLOCK_K * 2;
    static constexpr uint32_t kSmemBBytes = kNumSlabs * WeightSlab<kWeightBits>::kBytes;
    // [A stages][B stages][full | empty barriers][split-K flag]
    static constexpr uint32_t kSmemBytes = kNumStages * (kSmemABytes + kSmemBBytes) + kNumStages * 2 * 8 + 16;

    static_assert(kNumMathWarpgroups == 1 || kNumMathWarpgroups == 2, "one or two consumer warpgroups");
    static_assert(BLOCK_M % 8 == 0 && BLOCK_M >= 8 && BLOCK_M <= 256, "the WGMMA's N: a multiple of 8 up to 256");
    static_assert(kSmemABytes % 1024 == 0, "128B-swizzled activation tiles must stay 1024-byte aligned");
    static_assert(kGroupKBlocks >= 1, "a K group is whole k-blocks");
    static_assert(kNumSplits >= 1 && kNumSplits <= kNumKBlocks, "every split owns at least one k-block");
    static_assert(kNumStages >= 2, "the consumers hold two stages at once");
    static_assert(kSmemBytes <= 232448, "exceeds the 227 KB of shared memory a block may opt into");
};

template <uint32_t SHAPE_N, uint32_t SHAPE_K, uint32_t BLOCK_M, uint32_t kNumMathWarpgroups, uint32_t kNumStages,
          uint32_t kWeightBits, uint32_t kGroupKBlocks, bool kHasZeros, bool kIsFP16, OutType kOutType,
          uint32_t kNumSplits, GemmKind kKind>
__global__ void __launch_bounds__(
    (WonlyLayout<SHAPE_N, SHAPE_K, BLOCK_M, kNumMathWarpgroups, kNumStages, kWeightBits, kGroupKBlocks,
                 kNumSplits>::kNumThreads), 1)
sm90_wonly_gemm(uint32_t shape_m, uint32_t num_groups, const int32_t* __restrict__ masked_m,
                const uint8_t* __restrict__ scales, const uint8_t* __restrict__ zeros, uint8_t* d,
                uint64_t d_row_bytes, uint64_t d_group_bytes,
                float* workspace, uint32_t* tile_counters, const __grid_constant__ TmaDescriptor tmap_a,
                const __grid_constant__ TmaDescriptor tmap_b) {
    using Layout = WonlyLayout<SHAPE_N, SHAPE_K, BLOCK_M, kNumMathWarpgroups, kNumStages, kWeightBits, kGroupKBlocks,
                               kNumSplits>;
    using Mma = WonlyMma<Layout, kIsFP16, kHasZeros>;
    using Params = typename Mma::Params;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = Mma::kNumAccum;
    static_assert(kKind == GemmKind::Dense || kKind == GemmKind::Masked, "dense or masked grouped");
    static_assert(kWeightBits == 4 || !kHasZeros, "zero points are for INT4 weights");

    constexpr bool kIsMasked = kKind == GemmKind::Masked;
    using Unit = WonlyUnit<Layout, kNumSplits, kIsMasked>;
    // The CTA's units (impls/wonly/schedule.cuh), a persistent walk: dense, tile K ranges; masked,
    // experts' n-blocks. The whole CTA leaves at once when it has none.
    const uint32_t num_units = Unit::count(shape_m, num_groups);
    if (blockIdx.x >= num_units)
        return;

    // Shared memory: [A stages][B stages][full | empty barriers][split-K flag].
    extern __shared__ __align__(1024) uint8_t smem[];
    uint8_t* smem_a = smem;
    uint8_t* smem_b = smem_a + kNumStages * Layout::kSmemABytes;
    uint64_t* full_barriers = reinterpret_cast<uint64_t*>(smem_b + kNumStages * Layout::kSmemBBytes);
    uint64_t* empty_barriers = full_barriers + kNumStages;
    uint32_t* split_flag = reinterpret_cast<uint32_t*>(empty_barriers + kNumStages);

    const uint32_t thread = threadIdx.x;
    start_pipeline<Layout::kSmemBytes, kNumStages, 1, kNumMathThreads>(thread, full_barriers, empty_barriers,
                                                                       &tmap_a, &tmap_b);

    if (thread >= kNumMathThreads) {
        // Producer: one thread issues every k-block's loads (the tile's activation rows, its slabs),
        // and, as it streams a K group's first stage, brings the group's scales (and zero points) of
        // the tile's rows into L2, where the consumers' reads of them a few k-blocks ahead find them.
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            uint32_t stage = 0, phase = 0;
            for (uint32_t index = blockIdx.x; index < num_units; index += gridDim.x) {
                const Unit unit(index, shape_m, masked_m);
                const int32_t first_slab =
                    unit.group * Layout::kNumSlabsPerExpert + unit.n_block * Layout::kNumSlabs;
                const uint8_t* unit_scales = scales + uint64_t{unit.group} * Layout::kNumGroupsK * SHAPE_N * 2;
                const uint8_t* unit_zeros = zeros + uint64_t{unit.group} * Layout::kNumGroupsK * SHAPE_N * (kHasZeros ? 1 : 0);
                for (uint32_t m_block = unit.m_first; m_block < unit.m_end; ++m_block) {
                    for (uint32_t k_block = unit.k_begin; k_block < unit.k_end; ++k_block) {
                        if (m_block == unit.m_first && (k_block == unit.k_begin || k_block % kGroupKBlocks == 0))
                            Params::prefetch_tile(unit_scales, unit_zeros, unit.n_block * Layout::BLOCK_N,
                                                  k_block / kGroupKBlocks);
                        ptx::mbarrier_wait(&empty_barriers[stage], phase ^ 1);
                        uint64_t* bar = &full_barriers[stage];
                        ptx::mbarrier_arrive_expect_tx(bar, Layout::kSmemABytes + Layout::kSmemBBytes);
                        uint8_t* dst_a = smem_a + stage * Layout::kSmemABytes;
                        const int32_t k = k_block * Layout::BLOCK_K, row = m_block * BLOCK_M;
                        if constexpr (kIsMasked)
                            ptx::tma_load_3d(&tmap_a, bar, dst_a, k, row, unit.group);
                        else
                            ptx::tma_load_2d(&tmap_a, bar, dst_a, k, row);
                        ptx::tma_load_3d(&tmap_b, bar, smem_b + stage * Layout::kSmemBBytes, 0, k_block,
                                         first_slab);
                        if (++stage == kNumStages)
                            stage = 0, phase ^= 1;
                    }
                }
            }
        }
        __syncwarp();
    } else {
        ptx::warpgroup_reg_alloc<kNumMathWarpgroups == 1 ? 248 : 232>();
        const uint32_t warp = warp_uniform(thread / 32);
        const uint32_t lane = thread % 32;

        Params params{};
        float accum[kNumAccum];
        Mma mainloop{ptx::smem_addr(full_barriers), ptx::smem_addr(empty_barriers),
                     ptx::smem_addr(smem_b + warp * WeightSlab<kWeightBits>::kBytes),
                     ptx::make_smem_desc_k_major_sw128(smem_a), lane, params, accum,
                     ptx::dynamic_smem_size() < Layout::kSmemBytes};
        // A unit's expert scales and zero points, and this thread's weight rows: n_row and n_row + 8
        // (the A fragment's rows r and r + 8).
        const auto point = [&](Params& target, const Unit& unit) {
            target.point(scales + uint64_t{unit.group} * Layout::kNumGroupsK * SHAPE_N * 2,
                         zeros + uint64_t{unit.group} * Layout::kNumGroupsK * SHAPE_N * (kHasZeros ? 1 : 0),
                         unit.n_block * Layout::BLOCK_N + warp * 16 + lane / 4);
        };
        // The next unit's first group of scales is read while this unit runs (nothing reads the
        // registers before that unit starts), so a unit starts without waiting for memory.
        typename Params::Raw ahead_params{};
        bool ahead = false;
        for (uint32_t index = blockIdx.x; index < num_units; index += gridDim.x) {
            const Unit unit(index, shape_m, masked_m);
            point(params, unit);
            const uint32_t n_row = unit.n_block * Layout::BLOCK_N + warp * 16 + lane / 4;
            params.prime(unit.k_begin, unit.k_end, ahead_params, ahead);
            ahead = index + gridDim.x < num_units;
            if (ahead) {
                const Unit next(index + gridDim.x, shape_m, masked_m);
                Params next_params;
                point(next_params, next);
                next_params.fetch(next.k_begin / kGroupKBlocks, ahead_params);
            }
            uint8_t* d_group = d + uint64_t{unit.group} * d_group_bytes;
            for (uint32_t m_block = unit.m_first; m_block < unit.m_end; ++m_block) {
                if (m_block != unit.m_first)
                    params.prime(unit.k_begin, unit.k_end, ahead_params, false);
                mainloop.k_loop(unit.k_begin, unit.k_end);
                if constexpr (kNumSplits > 1) {
                    const uint32_t tile_index = m_block * Layout::kNumNBlocks + unit.n_block;
                    float* tile_workspace =
                        workspace + uint64_t{tile_index} * kNumSplits * kNumMathThreads * kNumAccum;
                    if (!reduce_split_k<kNumSplits, kNumMathThreads>(accum, tile_workspace,
                                                                    tile_counters + tile_index, unit.split, thread,
                                                                    split_flag, 1))
                        continue;
                }
                store_transposed<kOutType>(accum, d_group, d_row_bytes, m_block * BLOCK_M, unit.num_tokens, n_row,
                                           SHAPE_N, lane);
            }
        }
    }
}

}  // namespace deepgemm

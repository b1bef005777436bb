#pragma once

#include <deepgemm/common/gemm_kind.cuh>
#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/wonly/dequant.cuh>
#include <deepgemm/impls/wonly/epilogue.cuh>
#include <deepgemm/impls/wonly/mainloop.cuh>
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
// overlapping the next k-block's dequantisation with this one's WGMMAs. One CTA per output tile
// (no persistent loop): where the tiles are fewer than the SMs, kNumSplits CTAs split the tile's K
// range and the last one to finish adds the others' partial sums (impls/wonly/epilogue.cuh).
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
sm90_wonly_gemm(uint32_t shape_m, const int32_t* __restrict__ masked_m, const uint8_t* __restrict__ scales,
                const uint8_t* __restrict__ zeros, uint8_t* d, uint64_t d_row_bytes, uint64_t d_group_bytes,
                float* workspace, uint32_t* tile_counters, const __grid_constant__ TmaDescriptor tmap_a,
                const __grid_constant__ TmaDescriptor tmap_b) {
    using Layout = WonlyLayout<SHAPE_N, SHAPE_K, BLOCK_M, kNumMathWarpgroups, kNumStages, kWeightBits, kGroupKBlocks,
                               kNumSplits>;
    using Mma = WonlyMma<Layout, kIsFP16, kHasZeros>;
    constexpr uint32_t kNumMathThreads = Layout::kNumMathThreads;
    constexpr uint32_t kNumAccum = Mma::kNumAccum;
    static_assert(kKind == GemmKind::Dense || kKind == GemmKind::Masked, "dense or masked grouped");
    static_assert(kWeightBits == 4 || !kHasZeros, "zero points are for INT4 weights");

    // The CTA's work: blockIdx.x = ((m_block * n-blocks) + n_block) * splits + split for the dense
    // kind, one tile; group * n-blocks + n_block for the masked kind, every m-block of the group's
    // valid rows in turn (their count is known only here, so a grid over them would mostly exit).
    uint32_t block = blockIdx.x;
    const uint32_t split = block % kNumSplits;
    block /= kNumSplits;
    const uint32_t n_block = block % Layout::kNumNBlocks;
    block /= Layout::kNumNBlocks;
    constexpr bool kIsMasked = kKind == GemmKind::Masked;
    static_assert(!kIsMasked || kNumSplits == 1, "the masked kind does not split K");
    const uint32_t group = kIsMasked ? block : 0;
    const uint32_t m_first = kIsMasked ? 0 : block;
    // Valid tokens of the group; the whole CTA leaves at once when it has no tile.
    const uint32_t num_tokens =
        kIsMasked ? min_of(static_cast<uint32_t>(max_of(__ldg(masked_m + group), 0)), shape_m) : shape_m;
    const uint32_t m_end = kIsMasked ? ceil_div(num_tokens, BLOCK_M) : m_first + 1;
    if (m_first >= m_end)
        return;
    const uint32_t k_begin = split * Layout::kNumKBlocks / kNumSplits;
    const uint32_t k_end = (split + 1) * Layout::kNumKBlocks / kNumSplits;

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
        // Producer: one thread issues every k-block's loads (the tile's activation rows, its slabs).
        ptx::warpgroup_reg_dealloc<40>();
        if (thread == kNumMathThreads) {
            const int32_t first_slab = group * Layout::kNumSlabsPerExpert + n_block * Layout::kNumSlabs;
            uint32_t stage = 0, phase = 0;
            for (uint32_t m_block = m_first; m_block < m_end; ++m_block) {
                for (uint32_t k_block = k_begin; k_block < k_end; ++k_block) {
                    ptx::mbarrier_wait(&empty_barriers[stage], phase ^ 1);
                    uint64_t* bar = &full_barriers[stage];
                    ptx::mbarrier_arrive_expect_tx(bar, Layout::kSmemABytes + Layout::kSmemBBytes);
                    uint8_t* dst_a = smem_a + stage * Layout::kSmemABytes;
                    const int32_t k = k_block * Layout::BLOCK_K, row = m_block * BLOCK_M;
                    if constexpr (kIsMasked)
                        ptx::tma_load_3d(&tmap_a, bar, dst_a, k, row, group);
                    else
                        ptx::tma_load_2d(&tmap_a, bar, dst_a, k, row);
                    ptx::tma_load_3d(&tmap_b, bar, smem_b + stage * Layout::kSmemBBytes, 0, k_block, first_slab);
                    if (++stage == kNumStages)
                        stage = 0, phase ^= 1;
                }
            }
        }
        __syncwarp();
    } else {
        ptx::warpgroup_reg_alloc<kNumMathWarpgroups == 1 ? 248 : 232>();
        const uint32_t warp = warp_uniform(thread / 32);
        const uint32_t lane = thread % 32;
        // This thread's weight rows: n_row and n_row + 8 (the A fragment's rows r and r + 8).
        const uint32_t n_row = n_block * Layout::BLOCK_N + warp * 16 + lane / 4;

        GroupParams<Layout, kHasZeros> params{
            scales + uint64_t{group} * Layout::kNumGroupsK * SHAPE_N * 2,
            zeros + uint64_t{group} * Layout::kNumGroupsK * SHAPE_N * (kHasZeros ? 1 : 0),
            {n_row, n_row + 8}, {n_row < SHAPE_N, n_row + 8 < SHAPE_N}, {0, 0}, {0, 0}};
        float accum[kNumAccum];
        Mma mainloop{full_barriers, empty_barriers, smem_b + warp * WeightSlab<kWeightBits>::kBytes,
                     ptx::make_smem_desc_k_major_sw128(smem_a), lane, params, accum};
        uint8_t* d_group = d + uint64_t{group} * d_group_bytes;
        for (uint32_t m_block = m_first; m_block < m_end; ++m_block) {
            mainloop.k_loop(k_begin, k_end);
            if constexpr (kNumSplits > 1) {
                const uint32_t tile_index = m_block * Layout::kNumNBlocks + n_block;
                float* tile_workspace = workspace + uint64_t{tile_index} * kNumSplits * kNumMathThreads * kNumAccum;
                if (!reduce_split_k<kNumSplits, kNumMathThreads>(accum, tile_workspace, tile_counters + tile_index,
                                                                split, thread, split_flag, 1))
                    continue;
            }
            store_transposed<kOutType>(accum, d_group, d_row_bytes, m_block * BLOCK_M, num_tokens, n_row, SHAPE_N,
                                       lane);
        }
    }
}

}  // namespace deepgemm

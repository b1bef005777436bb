#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/wonly/dequant.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/dequant.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_16bit_rs.cuh>

namespace deepgemm {

// A thread's per-K-group scale (and zero point) reads for its two weight rows, one group ahead of
// use: a group's values are loaded as the previous group starts, so their latency passes while that
// group's k-blocks run. Scales are [G][groups along K][N] of the activation dtype, zero points
// [G][groups along K][N] bytes (both written by deepgemm/quant/wonly.py); rows past N read as 0.
template <typename Layout, bool kHasZeros>
struct GroupParams {
    static constexpr uint32_t kSymmetricZero = Layout::kWeightBits == 4 ? 8 : 128;

    const uint8_t* scales;  // this expert's [groups along K][N]
    const uint8_t* zeros;
    uint32_t row[2];
    bool row_valid[2];
    uint32_t next_scale[2], next_zero[2];

    __device__ __forceinline__ void load(uint32_t k_group) {
        #pragma unroll
        for (uint32_t r = 0; r < 2; ++r) {
            const bool ok = row_valid[r] && k_group < Layout::kNumGroupsK;
            const uint64_t index = uint64_t{k_group} * Layout::SHAPE_N + row[r];
            next_scale[r] = ok ? ptx::ld_global_nc_u16(scales + index * 2) : 0u;
            next_zero[r] = kHasZeros ? (ok ? ptx::ld_global_nc_u8(zeros + index) : 0u) : kSymmetricZero;
        }
    }
};

// One consumer warpgroup's mainloop over k-blocks [k_begin, k_end) of its tile: per k-block the
// warpgroup's 64 weight rows are dequantised from the stage into A fragments (registers), then four
// register-A WGMMAs (m64 x BLOCK_M x k16) multiply them with the stage's activation tile. The next
// k-block's dequantisation runs while this one's WGMMAs do: the fragments are double-buffered, and a
// stage is freed once the WGMMAs that read its activations retired. `stage` and `phase` (the ring
// position) advance here and carry over from one tile to the next.
template <typename Layout, bool kIsFP16, bool kHasZeros>
struct WonlyMma {
    using MMA = ptx::Wgmma16RS<Layout::BLOCK_M>;
    using Dequant = SlabDequant<Layout::kWeightBits, kIsFP16>;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    static constexpr uint32_t kNumStages = Layout::kNumStages;

    uint64_t* full_barriers;
    uint64_t* empty_barriers;
    const uint8_t* smem_slab;  // stage 0's slab of this warp
    uint64_t desc_a_base;      // the activation tile of stage 0 (the WGMMA's B operand)
    uint32_t lane;
    GroupParams<Layout, kHasZeros>& params;
    float (&accum)[kNumAccum];

    uint32_t stage = 0, phase = 0;
    RowDequant rows;
    bool rows_ready = false;

    __device__ __forceinline__ void dequant(uint32_t k_block, uint32_t (&frag)[4][4]) {
        ptx::mbarrier_wait(&full_barriers[stage], phase);
        if (k_block % Layout::kGroupKBlocks == 0 || !rows_ready) {
            Dequant::set_rows(rows, params.next_scale, params.next_zero);
            rows_ready = true;
            params.load(k_block / Layout::kGroupKBlocks + 1);
        }
        Dequant::convert(smem_slab + stage * Layout::kSmemBBytes, lane, rows, frag);
    }

    __device__ __forceinline__ void issue(uint32_t (&frag)[4][4], bool first) {
        const uint64_t desc = desc_a_base + stage * (Layout::kSmemABytes >> 4);
        ptx::wgmma_fence();
        #pragma unroll
        for (uint32_t s = 0; s < 4; ++s)
            MMA::template mma<kIsFP16>(frag[s], desc + s * 2, accum, !first || s > 0);
        ptx::wgmma_commit_group();
    }

    __device__ __forceinline__ void advance() {
        if (++stage == kNumStages)
            stage = 0, phase ^= 1;
    }

    __device__ __forceinline__ uint32_t previous_stage() const {
        return stage == 0 ? kNumStages - 1 : stage - 1;
    }

    // One k-block: issue its WGMMAs with `cur`, then (when another follows) wait for the previous
    // k-block's WGMMAs, free their stage, and dequantise the next k-block into `next`.
    __device__ __forceinline__ void step(uint32_t k_block, uint32_t k_begin, uint32_t k_end, uint32_t (&cur)[4][4],
                                         uint32_t (&next)[4][4]) {
        issue(cur, k_block == k_begin);
        if (k_block + 1 < k_end) {
            ptx::wgmma_wait_group<1>();
            if (k_block > k_begin)
                release_stage<1>(&empty_barriers[previous_stage()], lane);
            advance();
            dequant(k_block + 1, next);
        }
    }

    __device__ __forceinline__ void k_loop(uint32_t k_begin, uint32_t k_end) {
        uint32_t frag[2][4][4];
        params.load(k_begin / Layout::kGroupKBlocks);
        rows_ready = false;
        dequant(k_begin, frag[0]);
        // Unrolled by two so that each fragment buffer is a fixed set of registers.
        for (uint32_t k_block = k_begin; k_block < k_end; k_block += 2) {
            step(k_block, k_begin, k_end, frag[0], frag[1]);
            if (k_block + 1 < k_end)
                step(k_block + 1, k_begin, k_end, frag[1], frag[0]);
        }
        ptx::wgmma_wait_group<0>();
        if (k_end - k_begin > 1)
            release_stage<1>(&empty_barriers[previous_stage()], lane);
        release_stage<1>(&empty_barriers[stage], lane);
        advance();
        #pragma unroll
        for (uint32_t i = 0; i < kNumAccum; ++i)
            ptx::fence_operand(accum[i]);
    }
};

}  // namespace deepgemm

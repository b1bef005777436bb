#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/wonly/dequant.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/dequant.cuh>
#include <deepgemm/ptx/global.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/smem.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_16bit_rs.cuh>

namespace deepgemm {

// A thread's per-K-group scale (and zero point) reads for its two weight rows. A load's register is
// read by nothing until the k-block that uses it: any instruction that reads it earlier (combining
// the scale with the zero point, a move along a queue) stalls the warp there until the load returns,
// and a scale read that misses L2 under full HBM load takes longer than a K group of one or two
// k-blocks runs at the HBM rate. So the reads sit in slots that the k-loop's unrolled steps index
// statically (kLead divides the steps of a pass): the step that dequantises k-block k (slot
// i = (k - k_begin) mod kLead) takes the values of k's group from slot i when k starts a group (they
// were read into slot i by the step of k-block k - kLead), then reads the group starting at k + kLead,
// if one does, into slot i. Each read leads its use by kLead k-blocks (a K range's first kLead
// k-blocks: by as many as lie before them), and the producer brings every group's lines into L2 as it
// streams the group's first stage, tens of k-blocks earlier, so these reads hit L2. Scales are [G][groups along K][N] of the activation dtype,
// zero points [G][groups along K][N] bytes (both written by deepgemm/quant/wonly.py); rows past N
// and groups past K read as 0.
template <typename Layout, bool kHasZeros, uint32_t kLead>
struct GroupParams {
    static constexpr uint32_t kSymmetricZero = Layout::kWeightBits == 4 ? 8 : 128;
    static constexpr uint32_t kGroupKBlocks = Layout::kGroupKBlocks;
    // One group over the whole of K (per channel): only a K range's first k-block reads one.
    static constexpr bool kOneGroup = Layout::kNumGroupsK == 1;

    // A group's values for rows r and r + 8, as loaded (the zero points only with kHasZeros).
    struct Raw {
        uint32_t scale[2];
        uint32_t zero[2];
    };

    // Row n_row's scale (and zero point) of K group 0 in this unit's expert's [groups along K][N]; row
    // n_row + 8's are 8 elements on, group g's g * N on (pointers kept rather than the expert's base
    // and the rows: two registers fewer, one multiply-add an address).
    const uint8_t* scale_row;
    const uint8_t* zero_row;
    bool row_valid[2];
    Raw first;         // the group of a K range's first k-block
    Raw slot[kLead];   // slot i: the next group read by a step whose k-block is i mod kLead past k_begin

    // Points the reads at a unit's expert and rows (n_row and n_row + 8).
    __device__ __forceinline__ void point(const uint8_t* expert_scales, const uint8_t* expert_zeros, uint32_t n_row) {
        scale_row = expert_scales + uint64_t{n_row} * 2;
        if constexpr (kHasZeros)
            zero_row = expert_zeros + n_row;
        row_valid[0] = n_row < Layout::SHAPE_N, row_valid[1] = n_row + 8 < Layout::SHAPE_N;
    }

    __device__ __forceinline__ void fetch(uint32_t k_group, Raw& raw) const {
        const uint64_t offset = uint64_t{k_group} * Layout::SHAPE_N;
        #pragma unroll
        for (uint32_t r = 0; r < 2; ++r) {
            const bool ok = row_valid[r] && k_group < Layout::kNumGroupsK;
            raw.scale[r] = ok ? ptx::ld_global_nc_u16(scale_row + (offset + r * 8) * 2) : 0u;
            if constexpr (kHasZeros)
                raw.zero[r] = ok ? ptx::ld_global_nc_u8(zero_row + offset + r * 8) : 0u;
        }
    }

    // A K range [k_begin, k_end): its first group (`preloaded`'s values when `is_preloaded`), and the
    // groups that start at k_begin + 1 .. k_begin + kLead - 1 (before k_end) into their steps' slots.
    __device__ __forceinline__ void prime(uint32_t k_begin, uint32_t k_end, const Raw& preloaded, bool is_preloaded) {
        if (is_preloaded)
            first = preloaded;
        else
            fetch(k_begin / kGroupKBlocks, first);
        if constexpr (!kOneGroup) {
            #pragma unroll
            for (uint32_t s = 1; s < kLead; ++s) {
                if ((k_begin + s) % kGroupKBlocks == 0 && k_begin + s < k_end)
                    fetch((k_begin + s) / kGroupKBlocks, slot[s]);
            }
        }
    }

    // Step s of the k-loop's pass at k-block k_block (k_end: its range's end; the pass's length a
    // multiple of kLead): the values of k_block's group into `rows` where they change, and the group
    // starting kLead k-blocks on read into slot s mod kLead.
    template <typename Dequant, uint32_t s>
    __device__ __forceinline__ void step(uint32_t k_block, uint32_t k_end, bool range_start, RowDequant& rows) {
        constexpr uint32_t i = s % kLead;
        if (range_start) {
            Dequant::template set_rows<kHasZeros, kSymmetricZero>(rows, first.scale, first.zero);
        } else if constexpr (!kOneGroup) {
            if (k_block % kGroupKBlocks == 0)
                Dequant::template set_rows<kHasZeros, kSymmetricZero>(rows, slot[i].scale, slot[i].zero);
        }
        if constexpr (!kOneGroup) {
            const uint32_t ahead = k_block + kLead;
            if (ahead % kGroupKBlocks == 0 && ahead < k_end)
                fetch(ahead / kGroupKBlocks, slot[i]);
        }
    }

    // The producer's side: brings one group's values of a tile's rows [n_first, n_first + BLOCK_N)
    // into L2, every 32-byte sector of them (one thread; far ahead of the consumers' reads).
    __device__ __forceinline__ static void prefetch_tile(const uint8_t* expert_scales, const uint8_t* expert_zeros,
                                                         uint32_t n_first, uint32_t k_group) {
        if (k_group >= Layout::kNumGroupsK)
            return;
        const uint32_t rows = min_of(Layout::BLOCK_N, Layout::SHAPE_N - n_first);
        const uint64_t index = uint64_t{k_group} * Layout::SHAPE_N + n_first;
        prefetch_sectors(expert_scales + index * 2, rows * 2);
        if constexpr (kHasZeros)
            prefetch_sectors(expert_zeros + index, rows);
    }

    __device__ __forceinline__ static void prefetch_sectors(const uint8_t* begin, uint32_t bytes) {
        const uint64_t first = reinterpret_cast<uint64_t>(begin) & ~uint64_t{31};
        const uint64_t last = (reinterpret_cast<uint64_t>(begin) + bytes - 1) & ~uint64_t{31};
        for (uint64_t sector = first; sector <= last; sector += 32)
            ptx::prefetch_l2(reinterpret_cast<const void*>(sector));
    }
};

// One consumer warpgroup's mainloop over k-blocks [k_begin, k_end) of its tile: per k-block the
// warpgroup's 64 weight rows are dequantised from the stage into A fragments (registers), then four
// register-A WGMMAs (m64 x BLOCK_M x k16) multiply them with the stage's activation tile.
//
// At decode sizes a k-block's WGMMAs are tiny (m64n8k16 is a few cycles of tensor-core work) and
// their time is latency, so the loop keeps latency off its critical path in two ways:
// - kDepth k-blocks' WGMMA groups stay in flight (kDepth fragment buffers; the wait before
//   dequantising the next k-block leaves kDepth - 1 groups pending), so a group's issue-to-retire
//   latency overlaps the dequantisation of the next kDepth - 1 k-blocks rather than one;
// - kNumSets independent accumulator sets: k16 step s accumulates into set s % kNumSets, so
//   consecutive WGMMAs do not wait for each other's accumulators (one chain through every WGMMA of
//   the tile otherwise). The sets are added (in set order) into the first after the last k-block.
// A stage is freed once the WGMMAs that read its activations retired. `stage` and `phase` (the ring
// position) advance here and carry over from one tile to the next.
template <typename Layout, bool kIsFP16, bool kHasZeros>
struct WonlyMma {
    using MMA = ptx::Wgmma16RS<Layout::BLOCK_M>;
    using Dequant = SlabDequant<Layout::kWeightBits, kIsFP16>;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    static constexpr uint32_t kNumStages = Layout::kNumStages;
    // Extra accumulator sets cost kNumAccum registers each: four for tiles of up to 32 tokens, two for
    // 64; prefill tiles are tensor-core bound and keep one chain.
    static constexpr uint32_t kNumSets = Layout::BLOCK_M <= 32 ? 4 : (Layout::BLOCK_M <= 64 ? 2 : 1);
    static constexpr uint32_t kDepth = Layout::BLOCK_M <= 64 ? 4 : 2;
    static_assert(kNumStages > kDepth, "the consumers hold kDepth stages at once, the producer needs one more");
    static_assert(4 % kNumSets == 0, "each set takes the same k16 steps of every k-block");
    // The scale reads lead their use by one pass of the k-loop (kDepth k-blocks, a slot per step), but
    // by half a pass for INT8 tiles of 64 tokens: their conversion and two accumulator sets leave too
    // few registers for four slots (a read every k-block spilled at the 168-register cap), and half a
    // pass of INT8 k-blocks is as long as a whole one of INT4 at the HBM rate.
    static constexpr uint32_t kScaleLead = Layout::kWeightBits == 8 && Layout::BLOCK_M == 64 ? kDepth / 2 : kDepth;
    static_assert(kDepth % kScaleLead == 0, "a slot is a fixed set of registers in every pass");
    using Params = GroupParams<Layout, kHasZeros, kScaleLead>;

    uint32_t full_barriers;   // shared-space addresses: stage 0's full and empty barriers,
    uint32_t empty_barriers;  // (8 bytes a stage)
    uint32_t smem_slab;       // and stage 0's slab of this warp
    uint64_t desc_a_base;      // the activation tile of stage 0 (the WGMMA's B operand)
    uint32_t lane;
    Params& params;
    float (&accum)[kNumAccum];  // set 0, and the sum of all sets after k_loop
    bool never;                 // false at run time, unknown to the compiler (see `keep`)

    uint32_t stage = 0, phase = 0;
    RowDequant rows;
    bool rows_ready = false;  // false until a K range's first k-block set `rows`
    uint32_t k_end = 0;       // the current K range's end
    float extra[kNumSets > 1 ? kNumSets - 1 : 1][kNumAccum];  // sets 1.. (unused with one set)

    // k_block at step s of its pass (s = (k_block - k_begin) mod kDepth: the scale slot).
    template <uint32_t s>
    __device__ __forceinline__ void dequant(uint32_t k_block, uint32_t (&frag)[4][4]) {
        params.template step<Dequant, s>(k_block, k_end, !rows_ready, rows);
        rows_ready = true;
        ptx::mbarrier_wait(full_barriers + stage * 8, phase);
        Dequant::convert(smem_slab + stage * Layout::kSmemBBytes, lane, rows, frag);
    }

    __device__ __forceinline__ float* set_accum(uint32_t set) {
        return set == 0 ? accum : extra[set - 1];
    }

    // The first k-block's first WGMMA into each set overwrites it (no zeroing).
    __device__ __forceinline__ void issue(uint32_t (&frag)[4][4], bool first) {
        const uint64_t desc = desc_a_base + stage * (Layout::kSmemABytes >> 4);
        ptx::wgmma_fence();
        #pragma unroll
        for (uint32_t s = 0; s < 4; ++s)
            MMA::template mma<kIsFP16>(frag[s], desc + s * 2, set_accum(s % kNumSets), !first || s >= kNumSets);
        ptx::wgmma_commit_group();
    }

    __device__ __forceinline__ void advance() {
        if (++stage == kNumStages)
            stage = 0, phase ^= 1;
    }

    // Lane 0 of each warp arrives (the empty barriers count one arrival per consumer warp).
    __device__ __forceinline__ void free_stage(uint32_t s) {
        ptx::mbarrier_arrive_if(empty_barriers + s * 8, lane == 0);
    }

    // The stage `back` k-blocks before the current one.
    __device__ __forceinline__ uint32_t stage_back(uint32_t back) const {
        return stage >= back ? stage - back : stage + kNumStages - back;
    }

    // A buffer's fragments read again where the assembler sees it, after the wait that retired their
    // group; called in a branch that is never taken (`never`). ptxas (13.0 to 13.5) treats a
    // register-A WGMMA's fragment registers as free once the instruction issued, though the tensor
    // cores read them until the group retires: with several groups in flight it gave the next
    // k-block's conversion the registers of a group still pending (wrong values, depending on timing).
    // A read after the retiring wait keeps each buffer's registers its own until then; of it only the
    // branch runs.
    __device__ __forceinline__ void keep(const uint32_t (&frag)[4][4]) const {
        #pragma unroll
        for (uint32_t s = 0; s < 4; ++s)
            ptx::st_shared_x4(smem_slab + s * 16, frag[s]);  // apart: none overwrites another
    }

    // One k-block, with fragment buffer b: issue its WGMMAs; unless it is the last (false), wait until
    // at most kDepth - 1 groups are pending (the group of k_block - (kDepth - 1) and older retired:
    // free that one's stage; buffer b + 1 was last read by that group) and dequantise the next k-block
    // into buffer b + 1.
    template <uint32_t b>
    __device__ __forceinline__ bool step(uint32_t& k_block, uint32_t k_begin, uint32_t k_end,
                                         uint32_t (&frag)[kDepth][4][4]) {
        issue(frag[b], k_block == k_begin);
        if (k_block + 1 == k_end)
            return false;
        ptx::wgmma_wait_group<kDepth - 1>();
        if (never)
            keep(frag[(b + 1) % kDepth]);
        if (k_block >= k_begin + (kDepth - 1))
            free_stage(stage_back(kDepth - 1));
        advance();
        dequant<(b + 1) % kDepth>(++k_block, frag[(b + 1) % kDepth]);
        return true;
    }

    // Steps b.. kDepth - 1 of a pass; false once the last k-block is issued.
    template <uint32_t b = 0>
    __device__ __forceinline__ bool steps(uint32_t& k_block, uint32_t k_begin, uint32_t k_end,
                                          uint32_t (&frag)[kDepth][4][4]) {
        if (!step<b>(k_block, k_begin, k_end, frag))
            return false;
        if constexpr (b + 1 < kDepth)
            return steps<b + 1>(k_block, k_begin, k_end, frag);
        return true;
    }

    // `params` comes primed for k_begin (GroupParams::prime).
    __device__ __forceinline__ void k_loop(uint32_t k_begin, uint32_t range_end) {
        uint32_t frag[kDepth][4][4];
        rows_ready = false;
        k_end = range_end;
        // Passes of kDepth k-blocks, each with its own buffer (a fixed set of registers); the last
        // k-block leaves the loop from where it is, so no path tests a later k-block after it.
        dequant<0>(k_begin, frag[0]);
        for (uint32_t k_block = k_begin; steps(k_block, k_begin, k_end, frag);) {
        }
        ptx::wgmma_wait_group<0>();
        if (never) {
            #pragma unroll
            for (uint32_t b = 0; b < kDepth; ++b)
                keep(frag[b]);
        }
        // The last min(k-blocks, kDepth) stages are still held: the current one and those before it.
        const uint32_t held = min_of(k_end - k_begin, kDepth);
        for (uint32_t back = 0; back < held; ++back)
            free_stage(stage_back(back));
        advance();
        #pragma unroll
        for (uint32_t i = 0; i < kNumAccum; ++i)
            ptx::fence_operand(accum[i]);
        #pragma unroll
        for (uint32_t set = 1; set < kNumSets; ++set) {
            #pragma unroll
            for (uint32_t i = 0; i < kNumAccum; ++i) {
                ptx::fence_operand(extra[set - 1][i]);
                accum[i] += extra[set - 1][i];
            }
        }
    }
};

}  // namespace deepgemm

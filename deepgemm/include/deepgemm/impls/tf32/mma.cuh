#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/tf32/promote_schedule.cuh>
#include <deepgemm/pipeline/stages.cuh>
#include <deepgemm/ptx/mbarrier.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_tf32.cuh>

namespace deepgemm {

// One consumer warpgroup's mainloop over a tile: per k-block it waits for the stage and issues the
// block's TF32 WGMMAs (m64nNk8, both operands K-major). `stage` and `phase`, the ring position,
// advance here.
//
// kPromoteEvery = 0 (TF32): one accumulator set, `accum[0]`, accumulates across k-blocks in the tensor
// cores. As in the 16-bit kernel, each k-block's WGMMAs are issued while the previous k-block's still
// run, and a stage is freed once the WGMMAs after it were issued.
//
// kPromoteEvery > 0 (3xTF32): the tensor cores' accumulation drops low bits at each step, which over
// a long K costs the digits 3xTF32 exists to keep. So a set of `accum` holds a chunk of kPromoteEvery
// k-blocks only, and each finished chunk is added to `total` with FP32 adds that round to nearest. The
// chunk's WGMMAs must complete before the add: with one set (kPromoteSets = 1) the warpgroup waits for
// them and its tensor-core work stops meanwhile; with two, the next chunk's first WGMMAs are issued
// into the other set first, so they run while the add does (Tf32PromoteSchedule says which k-block
// goes where). The result is in `total`.
template <typename Layout, uint32_t BLOCK_N, uint32_t kNumStages, uint32_t kNumTMAMulticast, uint32_t kPromoteEvery,
          uint32_t kPromoteSets>
struct Tf32Mma {
    using MMA = ptx::WgmmaTF32<BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // One 8-deep K step moves 32 bytes along a 128-byte K line; descriptors count 16 bytes.
    static constexpr uint32_t kStep = 8 * 4 / 16;
    static_assert(kPromoteEvery > 0 || kPromoteSets == 1, "TF32 accumulates in one set, in the tensor cores");

    uint64_t* const& full_barriers;
    uint64_t* const& empty_barriers;
    uint32_t& stage;
    uint32_t& phase;
    // This warpgroup's WGMMA descriptors in stage 0; in stage s, those plus s times the stage's size.
    const uint64_t& desc_a_base;
    const uint64_t& desc_b_base;
    const uint32_t& lane;
    float (&accum)[kPromoteSets][kNumWaves][kNumAccum];
    float (&total)[kNumWaves][kNumAccum];

    __device__ __forceinline__ void k_loop() {
        if constexpr (kPromoteEvery == 0) {
            tensor_core_k_loop();
        } else {
            using Schedule = Tf32PromoteSchedule<Layout::kNumKBlocks, kPromoteEvery, kPromoteSets>;
            #pragma unroll
            for (uint32_t w = 0; w < kNumWaves; ++w)
                #pragma unroll
                for (uint32_t i = 0; i < kNumAccum; ++i)
                    total[w][i] = 0.0f;
            for (uint32_t span = 0; span < Schedule::kNumFullSpans; ++span)
                run_span<Schedule, Schedule::kSpanKBlocks>();
            if constexpr (Schedule::kTailKBlocks != 0)
                run_span<Schedule, Schedule::kTailKBlocks>();
        }
    }

    // Waits for the current stage and issues its WGMMAs into `acc`, overwriting it unless `accumulate`.
    __device__ __forceinline__ void issue(float (&acc)[kNumWaves][kNumAccum], bool accumulate) {
        ptx::mbarrier_wait(&full_barriers[stage], phase);
        const uint64_t desc_a = desc_a_base + stage * (Layout::kSmemABytes >> 4);
        const uint64_t desc_b = desc_b_base + stage * (Layout::kSmemBBytes >> 4);
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w) {
            ptx::wgmma_fence();
            const uint64_t wave_desc_a = desc_a + (w * Layout::kWaveM * 128 >> 4);
            #pragma unroll
            for (uint32_t k = 0; k < Layout::BLOCK_K / 8; ++k)
                MMA::mma(wave_desc_a + k * kStep, desc_b + k * kStep, acc[w], accumulate || k > 0);
        }
        ptx::wgmma_commit_group();
    }

    __device__ __forceinline__ void next_stage() {
        if (++stage == kNumStages)
            stage = 0, phase ^= 1;
    }

    __device__ __forceinline__ void tensor_core_k_loop() {
        // The stage whose WGMMAs may still run; freed once the next k-block's are issued.
        uint32_t in_flight_stage = 0;
        for (uint32_t k_block = 0; k_block < Layout::kNumKBlocks; ++k_block) {
            issue(accum[0], k_block > 0);
            ptx::wgmma_wait_group<1>();
            if (k_block > 0)
                release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
            in_flight_stage = stage;
            next_stage();
        }
        ptx::wgmma_wait_group<0>();
        release_stage<kNumTMAMulticast>(&empty_barriers[in_flight_stage], lane);
    }

    // kLen k-blocks of straight-line code, from and to no WGMMA in flight (see Tf32PromoteSchedule).
    template <typename Schedule, uint32_t kLen>
    __device__ __forceinline__ void run_span() {
        uint32_t previous_stage = 0;
        #pragma unroll
        for (uint32_t i = 0; i < kLen; ++i) {
            issue(accum[Schedule::set_of(i)], !Schedule::starts_chunk(i));
            if (i > 0) {
                ptx::wgmma_wait_group<1>();
                release_stage<kNumTMAMulticast>(&empty_barriers[previous_stage], lane);
            }
            if constexpr (kPromoteSets == 2) {
                if (Schedule::promoted_before(i) != Schedule::kNoSet)
                    promote(accum[Schedule::promoted_before(i) % kPromoteSets]);
            }
            if (Schedule::promoted_at_end(i, kLen) != Schedule::kNoSet) {
                ptx::wgmma_wait_group<0>();
                release_stage<kNumTMAMulticast>(&empty_barriers[stage], lane);
                promote(accum[Schedule::promoted_at_end(i, kLen) % kPromoteSets]);
            }
            previous_stage = stage;
            next_stage();
        }
    }

    // total += acc, once acc's WGMMAs have completed.
    __device__ __forceinline__ void promote(float (&acc)[kNumWaves][kNumAccum]) {
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w) {
            #pragma unroll
            for (uint32_t i = 0; i < kNumAccum; ++i) {
                ptx::fence_operand(acc[w][i]);
                total[w][i] += acc[w][i];
            }
        }
    }
};

}  // namespace deepgemm

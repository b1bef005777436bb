#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/impls/tf32/promote_schedule.cuh>
#include <deepgemm/impls/unpromoted/kernel.cuh>
#include <deepgemm/ptx/warpgroup.cuh>
#include <deepgemm/ptx/wgmma_tf32.cuh>

namespace deepgemm {

// One consumer warpgroup's TF32 WGMMAs of a k-block (m64nNk8, both operands K-major).
//
// kPromoteEvery = 0 (TF32): one accumulator set, `accum[0]`, accumulates across k-blocks in the tensor
// cores; UnpromotedConsumer::k_loop runs the k-blocks through `issue` and `wait_issued`.
//
// kPromoteEvery > 0 (3xTF32): the tensor cores' accumulation drops low bits at each step, which over
// a long K costs the digits 3xTF32 exists to keep. So a set of `accum` holds a chunk of kPromoteEvery
// k-blocks only, and each finished chunk is added to `total` with FP32 adds that round to nearest (the
// terms of the product are just more k-blocks). The chunk's WGMMAs must complete before the add: with
// one set (kPromoteSets = 1) the warpgroup waits for them and its tensor-core work stops meanwhile
// (but for the other consumer warpgroup's); with two, the next chunk's first WGMMAs are issued into
// the other set first, so they run while the add does (Tf32PromoteSchedule says which k-block goes
// where). `mma_k_blocks` runs that schedule on the skeleton's steps. The result is in `total`.
template <typename Layout, uint32_t kPromoteEvery, uint32_t kPromoteSets>
struct Tf32Wgmma {
    using MMA = ptx::WgmmaTF32<Layout::BLOCK_N>;
    static constexpr uint32_t kNumWaves = Layout::kNumWaves;
    static constexpr uint32_t kNumAccum = MMA::kNumAccum;
    // One 8-deep K step moves 32 bytes along a 128-byte K line; descriptors count 16 bytes.
    static constexpr uint32_t kStep = 8 * 4 / 16;
    static_assert(kPromoteEvery > 0 || kPromoteSets == 1, "TF32 accumulates in one set, in the tensor cores");

    float (&accum)[kPromoteSets][kNumWaves][kNumAccum];
    float (&total)[kNumWaves][kNumAccum];

    // The k-block's WGMMAs of one wave into `acc`, overwriting it unless `accumulate`.
    __device__ __forceinline__ static void issue_into(float (&acc)[kNumAccum], uint64_t wave_desc_a, uint64_t desc_b,
                                                      bool accumulate) {
        #pragma unroll
        for (uint32_t k = 0; k < Layout::BLOCK_K / 8; ++k)
            MMA::mma(wave_desc_a + k * kStep, desc_b + k * kStep, acc, accumulate || k > 0);
    }

    // TF32, per k-block of UnpromotedConsumer::k_loop: the tile's first k-block overwrites the set.
    __device__ __forceinline__ void issue(uint32_t w, uint64_t wave_desc_a, uint64_t desc_b, uint32_t k_block) {
        static_assert(kPromoteEvery == 0, "3xTF32 runs its own k-block schedule (mma_k_blocks)");
        issue_into(accum[0][w], wave_desc_a, desc_b, k_block > 0);
    }

    __device__ __forceinline__ void wait_issued(uint32_t) { ptx::wgmma_wait_group<1>(); }

    // 3xTF32: the tile's k-blocks in spans of straight-line code (see Tf32PromoteSchedule), then
    // `total` is final. Dense only: every wave has valid rows.
    template <typename Consumer>
    __device__ __forceinline__ void mma_k_blocks(Consumer& consumer, const uint32_t (&num_valid_rows)[kNumWaves]) {
        static_assert(kPromoteEvery > 0, "TF32 runs UnpromotedConsumer::k_loop");
        using Schedule = Tf32PromoteSchedule<Layout::kNumKBlocks, kPromoteEvery, kPromoteSets>;
        #pragma unroll
        for (uint32_t w = 0; w < kNumWaves; ++w)
            #pragma unroll
            for (uint32_t i = 0; i < kNumAccum; ++i)
                total[w][i] = 0.0f;
        for (uint32_t span = 0; span < Schedule::kNumFullSpans; ++span)
            run_span<Schedule, Schedule::kSpanKBlocks>(consumer, num_valid_rows);
        if constexpr (Schedule::kTailKBlocks != 0)
            run_span<Schedule, Schedule::kTailKBlocks>(consumer, num_valid_rows);
        fence_accumulators(total);
    }

    // kLen k-blocks, from and to no WGMMA in flight. Every k-block but the span's first waits with one
    // group (its own) in flight, which frees the previous k-block's stage; the last waits for its own.
    template <typename Schedule, uint32_t kLen, typename Consumer>
    __device__ __forceinline__ void run_span(Consumer& consumer, const uint32_t (&num_valid_rows)[kNumWaves]) {
        uint32_t previous_stage = 0;
        #pragma unroll
        for (uint32_t i = 0; i < kLen; ++i) {
            SpanIssue<Schedule> span_issue{*this};
            consumer.issue_k_block(span_issue, i, false, num_valid_rows);
            if (i > 0) {
                ptx::wgmma_wait_group<1>();
                consumer.release(previous_stage);
            }
            if constexpr (kPromoteSets == 2) {
                if (Schedule::promoted_before(i) != Schedule::kNoSet)
                    promote(accum[Schedule::promoted_before(i) % kPromoteSets]);
            }
            if (Schedule::promoted_at_end(i, kLen) != Schedule::kNoSet) {
                ptx::wgmma_wait_group<0>();
                consumer.release(consumer.stage);
                promote(accum[Schedule::promoted_at_end(i, kLen) % kPromoteSets]);
            }
            previous_stage = consumer.stage;
            consumer.next_stage();
        }
    }

    // What UnpromotedConsumer::issue_k_block issues for k-block i of a span.
    template <typename Schedule>
    struct SpanIssue {
        Tf32Wgmma& wgmma;
        __device__ __forceinline__ void issue(uint32_t w, uint64_t wave_desc_a, uint64_t desc_b, uint32_t i) {
            issue_into(wgmma.accum[Schedule::set_of(i)][w], wave_desc_a, desc_b, !Schedule::starts_chunk(i));
        }
    };

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

    // The promoted sum (3xTF32), else the accumulators themselves.
    __device__ __forceinline__ float (&result())[kNumWaves][kNumAccum] { return kPromoteEvery > 0 ? total : accum[0]; }
};

}  // namespace deepgemm

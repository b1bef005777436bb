#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>
#include <deepgemm/ptx/smem.cuh>
#include <deepgemm/ptx/split_k.cuh>

namespace deepgemm {

// The weight-only kernel computes D^T tiles (weights on the WGMMA's M side): a thread's accumulator
// i holds weight row n_row + 8 * ((i / 2) % 2) and token 8 * (i / 4) + 2 * (lane % 4) + i % 2.
// Stored with plain stores, each checked against the valid tokens and N: decode tiles are a few rows
// of tokens, and the masked kind must leave rows past masked_m untouched.
template <OutType kOutType, uint32_t kNumAccum>
__device__ __forceinline__ void store_transposed(const float (&accum)[kNumAccum], uint8_t* d_tile,
                                                 uint64_t d_row_bytes, uint32_t first_token, uint32_t num_tokens,
                                                 uint32_t n_row, uint32_t shape_n, uint32_t lane) {
    constexpr uint32_t kOutBytes = kOutType == OutType::FP32 ? 4 : 2;
    #pragma unroll
    for (uint32_t i = 0; i < kNumAccum; ++i) {
        const uint32_t token = first_token + 8 * (i / 4) + 2 * (lane % 4) + i % 2;
        const uint32_t n = n_row + 8 * ((i / 2) % 2);
        if (token >= num_tokens || n >= shape_n)
            continue;
        uint8_t* out = d_tile + token * d_row_bytes + uint64_t{n} * kOutBytes;
        if constexpr (kOutType == OutType::FP32) {
            *reinterpret_cast<float*>(out) = accum[i];
        } else {
            const uint32_t packed =
                kOutType == OutType::BF16 ? ptx::pack_bf16x2(accum[i], 0.0f) : ptx::pack_f16x2(accum[i], 0.0f);
            *reinterpret_cast<uint16_t*>(out) = static_cast<uint16_t>(packed & 0xffffu);
        }
    }
}

// Split-K: the kNumSplits CTAs of one tile each write their partial accumulators to their slice of
// the workspace (in register order: element i of thread t at i * kNumMathThreads + t, so every
// access is coalesced and needs no index math), then count themselves in on the tile's counter. The
// last to arrive adds the slices in split order (the sum does not depend on which CTA is last),
// resets the counter for the next launch, and returns true: it stores the tile. The others return
// false. Called by every math thread; `flag` is a shared-memory word.
template <uint32_t kNumSplits, uint32_t kNumMathThreads, uint32_t kNumAccum>
__device__ __forceinline__ bool reduce_split_k(float (&accum)[kNumAccum], float* workspace, uint32_t* counter,
                                               uint32_t split, uint32_t thread, uint32_t* flag,
                                               uint32_t barrier_id) {
    constexpr uint32_t kSliceFloats = kNumMathThreads * kNumAccum;
    float* slice = workspace + uint64_t{split} * kSliceFloats;
    #pragma unroll
    for (uint32_t i = 0; i < kNumAccum; ++i)
        ptx::st_global_cg_f32(slice + i * kNumMathThreads + thread, accum[i]);
    ptx::fence_acq_rel_gpu();
    ptx::named_barrier_sync(barrier_id, kNumMathThreads);
    if (thread == 0) {
        const bool is_last = ptx::atomic_arrive_gpu(counter) == kNumSplits - 1;
        if (is_last)
            ptx::st_relaxed_gpu_u32(counter, 0);
        *reinterpret_cast<volatile uint32_t*>(flag) = is_last;
    }
    ptx::named_barrier_sync(barrier_id, kNumMathThreads);
    if (*reinterpret_cast<volatile uint32_t*>(flag) == 0)
        return false;
    ptx::fence_acq_rel_gpu();
    float sum[kNumAccum];
    #pragma unroll
    for (uint32_t i = 0; i < kNumAccum; ++i)
        sum[i] = 0.0f;
    for (uint32_t s = 0; s < kNumSplits; ++s) {
        const float* other = workspace + uint64_t{s} * kSliceFloats;
        #pragma unroll
        for (uint32_t i = 0; i < kNumAccum; ++i)
            sum[i] += s == split ? accum[i] : ptx::ld_global_cg_f32(other + i * kNumMathThreads + thread);
    }
    #pragma unroll
    for (uint32_t i = 0; i < kNumAccum; ++i)
        accum[i] = sum[i];
    return true;
}

}  // namespace deepgemm

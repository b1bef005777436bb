#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>

namespace deepgemm {

// What D is: a scaled BF16, FP16 or FP32 value, or the raw s32 sum (as torch._int_mm gives it).
enum class Int8Out { BF16, FP16, FP32, Int32 };
// The element type of the optional bias (None: no bias).
enum class Int8Bias { None, FP32, BF16, FP16 };

// The epilogue's operands, all read from global memory as the tile's epilogue starts. Each vector is
// addressed as `group * group_stride + index * stride`: a stride of 0 makes it per tensor (one value
// for every row or column), a group stride of 0 makes it shared by every group.
//   sa [rows]: the activations' scale per token;   sb [N]: the weights' scale per output channel;
//   bias [N] (Int8Bias);   zp [rows]: the activations' zero point per token (s32);
//   b_sums [N]: the weights' column sums, Σ_k B[n, k] (s32), precomputed once per weight.
// bias and b_sums are read a column pair at a time (one 8- or 4-byte load; their starts are 8-byte
// aligned and N is even): loaded one value at a time, the widest tiles with both ran out of registers.
// Two int32 moved as one 8-byte load (as types.cuh's Float2).
struct alignas(8) Int2 {
    int32_t x, y;
};

struct Int8EpilogueArgs {
    const float* sa;
    uint32_t sa_group_stride, sa_row_stride;
    const float* sb;
    uint32_t sb_group_stride, sb_col_stride;
    const void* bias;
    uint32_t bias_group_stride;
    const int32_t* zp;
    uint32_t zp_group_stride, zp_row_stride;
    const int32_t* b_sums;
    uint32_t b_sums_group_stride;
};

// The scaled output of one thread's share of a 64 x (2 * kNumAccum) s32 WGMMA accumulator, written
// over it as FP32 bits:
//   D[m, n] = sa[m] * sb[n] * (acc[m, n] - zp[m] * b_sums[n]) + bias[n]
// with the zero-point term only where kHasAzp (exact in s32 as long as the corrected sum fits), the
// scales multiplied in FP32 and the bias added last (an FMA). With asymmetric activations
// a_real[m, k] = sa[m] * (A[m, k] - zp[m]) and b_real[n, k] = sb[n] * B[n, k], this is exactly
// Σ_k a_real[m, k] * b_real[n, k] + bias[n], the sum taken in integers.
// The thread holds rows `row` and `row + 8` (in the vectors' row space: the group's own rows for the
// masked kind) and, per 8-column group i, columns col + 8 * i (+ 1), col = the tile's first column +
// 2 * (lane % 4); `num_rows` and `num_cols` (even, so a column pair is wholly inside or outside) bound
// the vectors.
template <Int8Bias kBias, bool kHasAzp, uint32_t kNumAccum>
__device__ __forceinline__ void dequantize_in_place(int32_t (&accum)[kNumAccum], const Int8EpilogueArgs& args,
                                                    uint32_t group, uint32_t row, uint32_t num_rows, uint32_t col,
                                                    uint32_t num_cols) {
    // Rows and columns past the ends read the last ones instead (their values are never stored):
    // clamping, not branching, keeps the conversion straight-line code that ptxas can do in place.
    float sa[2];
    int32_t zp[2];
    #pragma unroll
    for (uint32_t half = 0; half < 2; ++half) {
        const uint32_t r = min_of(row + half * 8, num_rows - 1);
        sa[half] = __ldg(args.sa + group * args.sa_group_stride + r * args.sa_row_stride);
        if constexpr (kHasAzp)
            zp[half] = __ldg(args.zp + group * args.zp_group_stride + r * args.zp_row_stride);
    }
    const float* sb = args.sb + group * args.sb_group_stride;
    #pragma unroll
    for (uint32_t i = 0; i < kNumAccum / 4; ++i) {
        const uint32_t c = min_of(col + i * 8, num_cols - 2);
        // sb may be per tensor (stride 0): one value at a time.
        const float scale_b[2] = {__ldg(sb + c * args.sb_col_stride), __ldg(sb + (c + 1) * args.sb_col_stride)};
        int32_t sums[2] = {0, 0};
        if constexpr (kHasAzp) {
            const Int2 pair = *reinterpret_cast<const Int2*>(args.b_sums + group * args.b_sums_group_stride + c);
            sums[0] = pair.x, sums[1] = pair.y;
        }
        float bias[2] = {0.0f, 0.0f};
        const uint32_t b = group * args.bias_group_stride + c;
        if constexpr (kBias == Int8Bias::FP32) {
            const Float2 pair = *reinterpret_cast<const Float2*>(static_cast<const float*>(args.bias) + b);
            bias[0] = pair.x, bias[1] = pair.y;
        } else if constexpr (kBias != Int8Bias::None) {
            const uint32_t pair = *reinterpret_cast<const uint32_t*>(static_cast<const uint16_t*>(args.bias) + b);
            if constexpr (kBias == Int8Bias::BF16)
                ptx::unpack_bf16x2(pair, bias[0], bias[1]);
            else
                ptx::unpack_f16x2(pair, bias[0], bias[1]);
        }
        #pragma unroll
        for (uint32_t j = 0; j < 2; ++j) {
            #pragma unroll
            for (uint32_t half = 0; half < 2; ++half) {
                const uint32_t e = i * 4 + half * 2 + j;
                int32_t value = accum[e];
                // In unsigned arithmetic, which wraps (signed overflow would be undefined).
                if constexpr (kHasAzp)
                    value = static_cast<int32_t>(static_cast<uint32_t>(value) -
                                                 static_cast<uint32_t>(zp[half]) * static_cast<uint32_t>(sums[j]));
                accum[e] = __float_as_int(static_cast<float>(value) * (sa[half] * scale_b[j]) + bias[j]);
            }
        }
    }
}

}  // namespace deepgemm

#pragma once

#include <deepgemm/common/types.cuh>

// Conversions between FP32 and packed pairs of 16-bit floats (in a packed pair the first, lower
// column, element sits in the low half), and FP32 to TF32.
namespace deepgemm::ptx {

// Round to nearest even.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    uint32_t packed;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
    return packed;
}

__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
    uint32_t packed;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(packed) : "f"(hi), "f"(lo));
    return packed;
}

// BF16 is the upper half of an FP32: widening is a shift.
__device__ __forceinline__ void unpack_bf16x2(uint32_t packed, float& lo, float& hi) {
    lo = __uint_as_float(packed << 16);
    hi = __uint_as_float(packed & 0xffff0000u);
}

__device__ __forceinline__ void unpack_f16x2(uint32_t packed, float& lo, float& hi) {
    asm("{ .reg .f16 l, h; mov.b32 {l, h}, %2; cvt.f32.f16 %0, l; cvt.f32.f16 %1, h; }"
        : "=f"(lo), "=f"(hi) : "r"(packed));
}

// FP32 rounded to the nearest TF32 (ties away from zero), returned as an FP32 whose low 13 mantissa
// bits are zero: the value the TF32 tensor cores then read exactly. The mask makes those bits zero
// whatever the conversion leaves in them.
__device__ __forceinline__ float round_to_tf32(float x) {
    uint32_t bits;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(bits) : "f"(x));
    return __uint_as_float(bits & 0xffffe000u);
}

}  // namespace deepgemm::ptx

namespace deepgemm::ptx {

__device__ __forceinline__ float f16_to_f32(uint16_t bits) {
    float f;
    asm("{ .reg .f16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(bits));
    return f;
}

// Two FP32 values to float8_e4m3fn, round to nearest even, finite values beyond 448 saturated; `lo`
// lands in the low byte. NaN inputs are the caller's business (their FP8 pattern is not specified).
__device__ __forceinline__ uint16_t pack_e4m3x2(float lo, float hi) {
    uint16_t packed;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(packed) : "f"(hi), "f"(lo));
    return packed;
}

}  // namespace deepgemm::ptx

namespace deepgemm::ptx {

// Bytes of the pair {hi, lo} (lo's bytes numbered 0-3, hi's 4-7) picked by the selector's nibbles,
// nibble i giving byte i of the result.
__device__ __forceinline__ uint32_t prmt(uint32_t lo, uint32_t hi, uint32_t selector) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(lo), "r"(hi), "r"(selector));
    return d;
}

}  // namespace deepgemm::ptx

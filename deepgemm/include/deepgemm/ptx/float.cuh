#pragma once

#include <deepgemm/common/types.cuh>

// Scalar FP32 arithmetic spelled as PTX where its exact rounding or NaN behaviour matters (the FP8
// casts must match torch's kernels bit for bit), so no compiler flag can substitute a faster form.
namespace deepgemm::ptx {

// IEEE division, round to nearest even, denormals kept: what `a / b` compiles to without fast math,
// which is how torch's CUDA kernels divide one tensor by another.
__device__ __forceinline__ float div_rn(float a, float b) {
    float d;
    asm("div.rn.f32 %0, %1, %2;" : "=f"(d) : "f"(a), "f"(b));
    return d;
}

__device__ __forceinline__ float abs_f32(float a) {
    float d;
    asm("abs.f32 %0, %1;" : "=f"(d) : "f"(a));
    return d;
}

// The larger of two values, NaN if either is NaN (torch's max reductions propagate NaN).
__device__ __forceinline__ float max_nan(float a, float b) {
    float d;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(d) : "f"(a), "f"(b));
    return d;
}

}  // namespace deepgemm::ptx

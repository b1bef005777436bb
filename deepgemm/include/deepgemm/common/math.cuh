#pragma once

#include <deepgemm/common/types.cuh>

namespace deepgemm {

template <typename T>
__host__ __device__ constexpr T ceil_div(T a, T b) {
    return (a + b - 1) / b;
}

template <typename T>
__host__ __device__ constexpr T align_up(T a, T b) {
    return ceil_div(a, b) * b;
}

template <typename T>
__host__ __device__ constexpr T min_of(T a, T b) {
    return a < b ? a : b;
}

template <typename T>
__host__ __device__ constexpr T max_of(T a, T b) {
    return a < b ? b : a;
}

template <typename T>
__host__ __device__ constexpr T gcd(T a, T b) {
    return b == 0 ? a : gcd(b, a % b);
}

// Stops the kernel with an illegal-instruction error: used for invariants the host already checks,
// so a violation means a launch-path bug rather than bad user input.
__device__ __forceinline__ void device_trap() {
    asm volatile("trap;");
}

}  // namespace deepgemm

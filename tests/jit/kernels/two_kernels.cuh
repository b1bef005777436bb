#pragma once

// Test header that breaks the one-kernel-per-header rule: the JIT must refuse to guess which
// __global__ function the stub meant.
namespace deepgemm_tests {

template <int kValue>
__global__ void wanted(int* out) {
    out[0] = kValue;
}

__global__ void stray(int* out) {
    out[0] = -1;
}

}  // namespace deepgemm_tests

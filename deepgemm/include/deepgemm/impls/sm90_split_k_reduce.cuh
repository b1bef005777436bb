#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>

// The second pass of split-K (impls/sm90_fp8_gemm_1d2d.cuh, impls/sm90_bf16_gemm.cuh):
// D[m, n] = (sum over s of workspace[s, m, n]) + C[m, n], the FP32 partial tiles of the K slices summed in
// the fixed order s = 0, 1, ..., then C added and the result rounded once to D's type, as the unsplit
// kernels round their accumulator plus C. A fixed order makes D the same bits on every run, which
// atomics or a first-come reduction would not. The workspace is FP32 [kNumSplits, M, N], row-major.
namespace deepgemm {

// Threads per block of the reduction; each thread sums 4 adjacent columns of a row at a time.
constexpr uint32_t kSplitKReduceThreads = 256;

// Two 32-bit words moved as one 8-byte access.
struct alignas(8) Words2 {
    uint32_t lo, hi;
};

// Four elements of kOutType: 16 bytes of FP32, 8 of a 16-bit type.
template <OutType kOutType>
struct Out4 {
    static constexpr uint32_t kElemBytes = kOutType == OutType::FP32 ? 4 : 2;

    __device__ __forceinline__ static void load(const uint8_t* src, float (&v)[4]) {
        if constexpr (kOutType == OutType::FP32) {
            const Bytes16 b = *reinterpret_cast<const Bytes16*>(src);
            for (uint32_t j = 0; j < 4; ++j)
                v[j] = __uint_as_float(b.word[j]);
        } else {
            const Words2 b = *reinterpret_cast<const Words2*>(src);
            if constexpr (kOutType == OutType::FP16) {
                ptx::unpack_f16x2(b.lo, v[0], v[1]);
                ptx::unpack_f16x2(b.hi, v[2], v[3]);
            } else {
                ptx::unpack_bf16x2(b.lo, v[0], v[1]);
                ptx::unpack_bf16x2(b.hi, v[2], v[3]);
            }
        }
    }

    __device__ __forceinline__ static void store(uint8_t* dst, const float (&v)[4]) {
        if constexpr (kOutType == OutType::FP32) {
            Bytes16 b;
            for (uint32_t j = 0; j < 4; ++j)
                b.word[j] = __float_as_uint(v[j]);
            *reinterpret_cast<Bytes16*>(dst) = b;
        } else {
            const bool is_fp16 = kOutType == OutType::FP16;
            *reinterpret_cast<Words2*>(dst) = {is_fp16 ? ptx::pack_f16x2(v[0], v[1]) : ptx::pack_bf16x2(v[0], v[1]),
                                               is_fp16 ? ptx::pack_f16x2(v[2], v[3]) : ptx::pack_bf16x2(v[2], v[3])};
        }
    }
};

// `c` may be `d` (D accumulates in place): each thread reads its C elements before it writes the same
// D elements, and no thread touches another's. N is a multiple of 4 and the rows of C and D 16-byte
// aligned (the ops' TMA rules), so every access is one aligned vector.
template <uint32_t kNumSplits, OutType kOutType, bool kHasC>
__global__ void __launch_bounds__(kSplitKReduceThreads)
sm90_split_k_reduce(uint32_t shape_m, uint32_t shape_n, const float* __restrict__ workspace, const uint8_t* c,
                    uint64_t c_row_bytes, uint8_t* d, uint64_t d_row_bytes) {
    using Out = Out4<kOutType>;
    static_assert(kNumSplits >= 2, "one slice needs no reduction");
    const uint32_t quads_per_row = shape_n / 4;
    const uint32_t num_quads = shape_m * quads_per_row;
    const uint64_t slice = static_cast<uint64_t>(shape_m) * shape_n;
    for (uint32_t i = blockIdx.x * kSplitKReduceThreads + threadIdx.x; i < num_quads;
         i += gridDim.x * kSplitKReduceThreads) {
        const uint32_t row = i / quads_per_row, col = (i - row * quads_per_row) * 4;
        const float* src = workspace + static_cast<uint64_t>(row) * shape_n + col;
        // Every slice's values are loaded before the first add, so their latencies overlap; the adds
        // then run in slice order (the compiler does not reassociate floating-point adds).
        Bytes16 parts[kNumSplits];
        #pragma unroll
        for (uint32_t s = 0; s < kNumSplits; ++s)
            parts[s] = *reinterpret_cast<const Bytes16*>(src + s * slice);
        float sum[4];
        #pragma unroll
        for (uint32_t j = 0; j < 4; ++j) {
            sum[j] = __uint_as_float(parts[0].word[j]);
            #pragma unroll
            for (uint32_t s = 1; s < kNumSplits; ++s)
                sum[j] += __uint_as_float(parts[s].word[j]);
        }
        if constexpr (kHasC) {
            float addend[4];
            Out::load(c + row * c_row_bytes + col * Out::kElemBytes, addend);
            #pragma unroll
            for (uint32_t j = 0; j < 4; ++j)
                sum[j] += addend[j];
        }
        Out::store(d + row * d_row_bytes + col * Out::kElemBytes, sum);
    }
}

}  // namespace deepgemm

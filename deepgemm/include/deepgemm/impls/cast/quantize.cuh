#pragma once

#include <deepgemm/common/math.cuh>
#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>
#include <deepgemm/ptx/float.cuh>

// What the fused FP8 casts share: reading the 16- or 32-bit input, and the DeepSeek-V3 block rule of
// deepgemm/quant/cast.py, with the same FP32 operations in the same order, so the results match the
// torch implementation bit for bit:
//   amax  = max |x| over the block (NaN if any element is NaN)
//   scale = max(amax, amax_floor) / 448                   (IEEE division)
//   q     = fp8(clamp(x / scale, -448, 448))              (IEEE division, round to nearest even)
// A reciprocal multiply in place of either division would round differently in the last bit.
namespace deepgemm::cast {

enum class InType { BF16, FP16, FP32 };

constexpr uint32_t kBlock = 128;        // elements per scale block along the scaled dim
constexpr uint32_t kVecElems = 8;       // elements one lane reads at once (16 bytes of 16-bit input)
constexpr float kFp8Max = 448.0f;

template <InType kIn>
struct Input;

template <>
struct Input<InType::BF16> {
    static constexpr uint32_t kBytes = 2;
    __device__ static float load1(const void* base, uint64_t i) {
        return __uint_as_float(uint32_t(static_cast<const uint16_t*>(base)[i]) << 16);
    }
    __device__ static void load8(const void* ptr, float (&v)[kVecElems]) {
        const Bytes16 w = *static_cast<const Bytes16*>(ptr);
        #pragma unroll
        for (uint32_t i = 0; i < 4; ++i)
            ptx::unpack_bf16x2(w.word[i], v[2 * i], v[2 * i + 1]);
    }
};

template <>
struct Input<InType::FP16> {
    static constexpr uint32_t kBytes = 2;
    __device__ static float load1(const void* base, uint64_t i) {
        return ptx::f16_to_f32(static_cast<const uint16_t*>(base)[i]);
    }
    __device__ static void load8(const void* ptr, float (&v)[kVecElems]) {
        const Bytes16 w = *static_cast<const Bytes16*>(ptr);
        #pragma unroll
        for (uint32_t i = 0; i < 4; ++i)
            ptx::unpack_f16x2(w.word[i], v[2 * i], v[2 * i + 1]);
    }
};

template <>
struct Input<InType::FP32> {
    static constexpr uint32_t kBytes = 4;
    __device__ static float load1(const void* base, uint64_t i) {
        return static_cast<const float*>(base)[i];
    }
    __device__ static void load8(const void* ptr, float (&v)[kVecElems]) {
        #pragma unroll
        for (uint32_t h = 0; h < 2; ++h) {
            const Bytes16 w = static_cast<const Bytes16*>(ptr)[h];
            #pragma unroll
            for (uint32_t i = 0; i < 4; ++i)
                v[4 * h + i] = __uint_as_float(w.word[i]);
        }
    }
};

// Elements [col, col + 8) of the row at `row_ptr`, zero beyond `cols` or where `valid` is false (zeros
// leave a block's amax unchanged). kVec: the row start is 16-byte aligned and `cols` a multiple of 8,
// so the 8 elements are all in or all out and one vector load reads them.
template <InType kIn, bool kVec>
__device__ __forceinline__ void load_segment(const void* row_ptr, uint32_t col, uint32_t cols, bool valid,
                                             float (&v)[kVecElems]) {
    using In = Input<kIn>;
    if constexpr (kVec) {
        if (valid && col < cols) {
            In::load8(static_cast<const char*>(row_ptr) + uint64_t(col) * In::kBytes, v);
        } else {
            #pragma unroll
            for (uint32_t i = 0; i < kVecElems; ++i)
                v[i] = 0.0f;
        }
    } else {
        #pragma unroll
        for (uint32_t i = 0; i < kVecElems; ++i)
            v[i] = valid && col + i < cols ? In::load1(row_ptr, col + i) : 0.0f;
    }
}

__device__ __forceinline__ float abs_max(float amax, const float (&v)[kVecElems]) {
    #pragma unroll
    for (uint32_t i = 0; i < kVecElems; ++i)
        amax = ptx::max_nan(amax, ptx::abs_f32(v[i]));
    return amax;
}

// The max over the `kLanes` lanes of each aligned group (xor shuffles stay inside it); every lane of
// the warp must call it.
template <uint32_t kLanes>
__device__ __forceinline__ float group_max(float amax) {
    #pragma unroll
    for (uint32_t mask = kLanes / 2; mask > 0; mask /= 2)
        amax = ptx::max_nan(amax, __shfl_xor_sync(0xffffffffu, amax, mask));
    return amax;
}

// torch's clamp(min=floor) keeps a NaN amax (a NaN compares false), and so does this.
__device__ __forceinline__ float block_scale(float amax, float amax_floor) {
    return ptx::div_rn(amax < amax_floor ? amax_floor : amax, kFp8Max);
}

// clamp(x / scale, -448, 448), NaN kept as torch's clamp keeps it (and -0.0 stays -0.0).
__device__ __forceinline__ float scaled(float x, float scale) {
    const float v = ptx::div_rn(x, scale);
    return v < -kFp8Max ? -kFp8Max : (v > kFp8Max ? kFp8Max : v);
}

// FP8 bytes of two clamped values (lo in the low byte). torch encodes NaN as 0x7f with the sign bit
// of the input; the conversion instruction does not promise that, so NaN is encoded here.
__device__ __forceinline__ uint32_t fp8_pair(float lo, float hi) {
    uint32_t packed = ptx::pack_e4m3x2(lo, hi);
    if (lo != lo || hi != hi) {
        const uint32_t nan_lo = 0x7fu | ((__float_as_uint(lo) >> 24) & 0x80u);
        const uint32_t nan_hi = 0x7fu | ((__float_as_uint(hi) >> 24) & 0x80u);
        const uint32_t byte_lo = lo != lo ? nan_lo : packed & 0xffu;
        const uint32_t byte_hi = hi != hi ? nan_hi : packed >> 8;
        packed = byte_lo | (byte_hi << 8);
    }
    return packed;
}

// Eight values quantised with `scale`, as two little-endian words (element 0 in the lowest byte).
__device__ __forceinline__ void quantize8(const float (&v)[kVecElems], float scale, uint32_t& w0,
                                          uint32_t& w1) {
    w0 = fp8_pair(scaled(v[0], scale), scaled(v[1], scale)) | (fp8_pair(scaled(v[2], scale), scaled(v[3], scale)) << 16);
    w1 = fp8_pair(scaled(v[4], scale), scaled(v[5], scale)) | (fp8_pair(scaled(v[6], scale), scaled(v[7], scale)) << 16);
}

// The first `count` (at most 8) quantised bytes to `dst`; all 8 with one 8-byte store when kVec (dst
// 8-byte aligned).
template <bool kVec>
__device__ __forceinline__ void store_segment(uint8_t* dst, uint32_t w0, uint32_t w1, uint32_t count) {
    if constexpr (kVec) {
        struct alignas(8) Words2 { uint32_t x, y; };
        *reinterpret_cast<Words2*>(dst) = Words2{w0, w1};
    } else {
        #pragma unroll
        for (uint32_t i = 0; i < kVecElems; ++i) {
            if (i < count)
                dst[i] = static_cast<uint8_t>((i < 4 ? w0 : w1) >> (8 * (i % 4)));
        }
    }
}

}  // namespace deepgemm::cast

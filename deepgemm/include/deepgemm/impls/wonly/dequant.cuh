#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>
#include <deepgemm/ptx/dequant.cuh>

namespace deepgemm {

// The packed weight layout (deepgemm/quant/wonly.py writes it; a one-time transform of the weight):
// the [N, K] matrix is cut into slabs of 16 rows by 64 columns (one warp's rows of one k-block; N is
// padded to 16 and K to 64), stored slab after slab along K, then along N: [N / 16][K / 64][slab].
// Within a slab the bytes are ordered so that each lane of the warp finds its A fragments of the four
// k16 steps (Wgmma16RS: rows r and r + 8, columns 2c.. and 2c + 8.., r = lane / 4, c = lane % 4) in
// one or two 16-byte runs, read without bank conflicts:
// - INT8 (1024 bytes): [half h][lane][16 bytes]; half h holds steps 2h and 2h + 1, 8 bytes each,
//   in fragment order a0..a7 (a0 a1 = row r, a2 a3 = row r + 8, a4..a7 the same 8 columns on).
//   A byte holds q + 128 (q the signed value).
// - INT4 (512 bytes): [lane][16 bytes]; 32-bit word s holds step s, nibble j (bits 4j..4j+3) being
//   fragment element 2j for j < 4 and 2(j - 4) + 1 for j >= 4, so that a mask of nibbles j and j + 4
//   lands one fragment register's pair. A nibble holds q + 8 (symmetric) or q (with zero points).
template <uint32_t kWeightBits>
struct WeightSlab {
    static_assert(kWeightBits == 8 || kWeightBits == 4, "INT8 or INT4 weights");
    static constexpr uint32_t kRows = 16;
    static constexpr uint32_t kCols = 64;
    static constexpr uint32_t kBytes = kRows * kCols * kWeightBits / 8;
};

// A thread's dequantisation parameters for its two rows (r and r + 8) in the current K group: each
// row's scale, and the bias the magic-number conversion leaves plus the zero point, as packed pairs
// of the activation dtype (the INT8 x BF16 path needs no bias: its conversion yields q itself).
struct RowDequant {
    uint32_t scale_x2[2];
    uint32_t bias_x2[2];
};

// Converts one k-block of a warp's slab (`slab`: its 16 x 64 weights in shared memory) into the A
// fragments of the k-block's four k16 steps: frag[step][register].
template <uint32_t kWeightBits, bool kIsFP16>
struct SlabDequant {
    // BF16 holds 128 + u exactly for u < 128 and FP16 1024 + u for u < 1024 (a mantissa step of 1).
    static constexpr uint32_t kMagicX2 = kIsFP16 ? 0x64006400u : 0x43004300u;

    // The bias pair of a zero point z (INT4): magic + z, exact in both dtypes.
    __device__ __forceinline__ static uint32_t bias_pair(uint32_t zero) {
        if constexpr (kWeightBits == 8)
            return kIsFP16 ? 0x64806480u : 0u;  // 1024 + 128 (FP16); BF16 converts to q directly
        else
            return kMagicX2 + zero * 0x00010001u;
    }

    // Row r's scale bits `scale[r]` (the low half; the high half 0, as loaded) and zero point
    // `zero[r]` (without zero points kSymmetricZero, a constant: `zero` is not read).
    template <bool kHasZeros, uint32_t kSymmetricZero>
    __device__ __forceinline__ static void set_rows(RowDequant& rows, const uint32_t (&scale)[2],
                                                    const uint32_t (&zero)[2]) {
        #pragma unroll
        for (uint32_t r = 0; r < 2; ++r) {
            rows.scale_x2[r] = scale[r] * 0x00010001u;
            rows.bias_x2[r] = bias_pair(kHasZeros ? zero[r] : kSymmetricZero);
        }
    }

    // `slab`: the slab's shared-space address.
    __device__ __forceinline__ static void convert(uint32_t slab, uint32_t lane, const RowDequant& rows,
                                                   uint32_t (&frag)[4][4]) {
        if constexpr (kWeightBits == 4) {
            uint32_t words[4];
            ptx::ld_shared_x4(slab + lane * 16, words);
            #pragma unroll
            for (uint32_t s = 0; s < 4; ++s) {
                frag[s][0] = int4_pair<0>(words[s], rows, 0);
                frag[s][1] = int4_pair<1>(words[s], rows, 1);
                frag[s][2] = int4_pair<2>(words[s], rows, 0);
                frag[s][3] = int4_pair<3>(words[s], rows, 1);
            }
        } else {
            #pragma unroll
            for (uint32_t h = 0; h < 2; ++h) {
                uint32_t words[4];
                ptx::ld_shared_x4(slab + h * 512 + lane * 16, words);
                #pragma unroll
                for (uint32_t t = 0; t < 2; ++t) {
                    const uint32_t lo = words[2 * t], hi = words[2 * t + 1];
                    uint32_t (&f)[4] = frag[2 * h + t];
                    f[0] = int8_pair<0>(lo, rows, 0);
                    f[1] = int8_pair<2>(lo, rows, 1);
                    f[2] = int8_pair<0>(hi, rows, 0);
                    f[3] = int8_pair<2>(hi, rows, 1);
                }
            }
        }
    }

    template <uint32_t j>
    __device__ __forceinline__ static uint32_t int4_pair(uint32_t word, const RowDequant& rows, uint32_t r) {
        const uint32_t biased = ptx::nibbles_as_magic_x2<j>(word, kMagicX2);
        return ptx::mul_x2<kIsFP16>(ptx::sub_x2<kIsFP16>(biased, rows.bias_x2[r]), rows.scale_x2[r]);
    }

    // Bytes i and i + 1 of `word` (one fragment register's pair), of row r.
    template <uint32_t i>
    __device__ __forceinline__ static uint32_t int8_pair(uint32_t word, const RowDequant& rows, uint32_t r) {
        if constexpr (kIsFP16) {
            const uint32_t biased = ptx::bytes_as_magic_f16x2<i>(word);
            return ptx::mul_x2<true>(ptx::sub_x2<true>(biased, rows.bias_x2[r]), rows.scale_x2[r]);
        } else {
            // q exact in BF16, times the scale rounded once: the same bits as q * s in FP32 rounded to
            // BF16 (q and s have 8 significant bits each, so their FP32 product is exact).
            return ptx::mul_x2<false>(ptx::biased_bytes_as_bf16x2<i>(word), rows.scale_x2[r]);
        }
    }
};

}  // namespace deepgemm

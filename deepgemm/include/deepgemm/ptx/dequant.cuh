#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/convert.cuh>
#include <deepgemm/ptx/smem.cuh>

// Integer-to-16-bit-float conversions for the weight-only kernels, and the packed 16-bit arithmetic
// that applies zero points and scales. The conversions place the integer's bits in the mantissa of a
// float whose exponent makes one mantissa step worth 1 ("magic number"): the float is then
// bias + u exactly, and one subtraction of the bias (plus the zero point) leaves the signed value.
namespace deepgemm::ptx {

// `prmt` (byte permute) is convert.cuh's: one definition for the casts and the weight-only dequant.

// (a & b) | c and (a & b) ^ c as one LOP3 each (the compiler otherwise may emit an AND and an OR).
__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

__device__ __forceinline__ uint32_t lop3_and_xor(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0x6A;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// 2^23 + byte `i` of `word` as an FP32 (its mantissa's low byte is the byte).
template <uint32_t i>
__device__ __forceinline__ float byte_as_magic_f32(uint32_t word) {
    return __uint_as_float(prmt(word, 0x4B000000u, 0x7440u | i));
}

// Bytes `i` and `i + 1` of `word` as an FP16 pair 1024 + byte (the low byte in the low half).
template <uint32_t i>
__device__ __forceinline__ uint32_t bytes_as_magic_f16x2(uint32_t word) {
    return prmt(word, 0x64646464u, 0x4040u | i | ((i + 1) << 8));
}

// Nibbles `j` and `j + 4` of `word` (bits 4j.. and 4j + 16..) as a pair 2^e + nibble, where
// `magic_pair` holds 2^e twice with a mantissa step of 1: 0x43004300 (BF16 128), 0x64006400 (FP16 1024).
template <uint32_t j>
__device__ __forceinline__ uint32_t nibbles_as_magic_x2(uint32_t word, uint32_t magic_pair) {
    return lop3_and_or(word >> (4 * j), 0x000F000Fu, magic_pair);
}

// Bytes `i` and `i + 1` of `word`, each u = q + 128 for a signed byte q, as the BF16 pair (q, q')
// exactly, in three integer operations and a subtraction (BF16 cannot hold 128 + u for u >= 128, so
// no single magic number does): the bytes' low 7 bits l placed in the mantissa of 128 give x = 128 + l;
// their top bit s picks y = 256 (s = 0) or 128 (s = 1); x - y = l + 128 s - 128 = u - 128 = q, an
// integer of at most 8 significant bits, which BF16 holds.
template <uint32_t i>
__device__ __forceinline__ uint32_t biased_bytes_as_bf16x2(uint32_t word) {
    const uint32_t t = prmt(word, 0u, 0x4040u | i | ((i + 1) << 8));  // u in bits 0-7, u' in bits 16-23
    const uint32_t x = lop3_and_or(t, 0x007F007Fu, 0x43004300u);
    const uint32_t y = lop3_and_xor(t, 0x00800080u, 0x43804380u);
    uint32_t d;
    asm("sub.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(x), "r"(y));
    return d;
}

template <bool kIsFP16>
__device__ __forceinline__ uint32_t sub_x2(uint32_t a, uint32_t b) {
    uint32_t d;
    if constexpr (kIsFP16)
        asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    else
        asm("sub.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

template <bool kIsFP16>
__device__ __forceinline__ uint32_t mul_x2(uint32_t a, uint32_t b) {
    uint32_t d;
    if constexpr (kIsFP16)
        asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    else
        asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

// 16 bytes of shared memory (16-byte aligned) into four registers; ordered after the barrier wait
// that makes them valid (the memory clobber).
__device__ __forceinline__ void ld_shared_x4(uint32_t addr, uint32_t (&words)[4]) {
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(words[0]), "=r"(words[1]), "=r"(words[2]), "=r"(words[3])
                 : "r"(addr) : "memory");
}

__device__ __forceinline__ void ld_shared_x4(const void* ptr, uint32_t (&words)[4]) {
    ld_shared_x4(smem_addr(ptr), words);
}

// A 16-bit (8-bit) value from global memory (read-only for the kernel's lifetime), zero-extended by
// the load itself into a 32-bit register: no separate widening reads the register before its use.
__device__ __forceinline__ uint32_t ld_global_nc_u16(const void* ptr) {
    uint32_t value;
    asm volatile("ld.global.nc.u16 %0, [%1];" : "=r"(value) : "l"(ptr));
    return value;
}

__device__ __forceinline__ uint32_t ld_global_nc_u8(const void* ptr) {
    uint32_t value;
    asm volatile("ld.global.nc.u8 %0, [%1];" : "=r"(value) : "l"(ptr));
    return value;
}

}  // namespace deepgemm::ptx

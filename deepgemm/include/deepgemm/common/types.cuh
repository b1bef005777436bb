#pragma once

// Fixed-width integer types and the tensor-map parameter type, declared here because the kernels
// include no CUDA toolkit header: the NVRTC wheel ships none, and nvcc must see the same source.
namespace deepgemm {

using int8_t = signed char;
using uint8_t = unsigned char;
using int16_t = short;
using uint16_t = unsigned short;
using int32_t = int;
using uint32_t = unsigned int;
using int64_t = long long;
using uint64_t = unsigned long long;

static_assert(sizeof(int32_t) == 4 && sizeof(int64_t) == 8, "unexpected integer widths");

// Sixteen bytes moved as one vector load or store (CUDA's uint4 needs the runtime headers).
struct alignas(16) Bytes16 {
    uint32_t word[4];
};

// Two floats moved as one 8-byte load (CUDA's float2 needs the runtime headers).
struct alignas(8) Float2 {
    float x, y;
};

// Element type of a GEMM's output D (and of its optional addend C).
enum class OutType { BF16, FP16, FP32 };

// Same size and alignment as the driver's CUtensorMap; the host encodes it and passes it by value
// as a `const __grid_constant__` parameter, so TMA reads it straight from the parameter space.
struct alignas(64) TmaDescriptor {
    unsigned long long opaque[16];
};

static_assert(sizeof(TmaDescriptor) == 128, "a tensor map is 128 bytes");

}  // namespace deepgemm

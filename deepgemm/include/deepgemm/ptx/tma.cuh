#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/smem.cuh>

// Tensor-memory-accelerator (bulk tensor copy) wrappers. Coordinates are in elements, innermost
// first, exactly as encoded in the tensor map; out-of-bounds boxes are zero-filled on load and
// clipped on store, which is how every M/N/K tail is handled.
namespace deepgemm::ptx {

__device__ __forceinline__ uint64_t tmap_ptr(const void* tmap) {
    return reinterpret_cast<uint64_t>(tmap);
}

__device__ __forceinline__ void prefetch_tma_descriptor(const void* tmap) {
    asm volatile("prefetch.tensormap [%0];" :: "l"(tmap_ptr(tmap)) : "memory");
}

__device__ __forceinline__ void tma_load_2d(const void* tmap, uint64_t* bar, void* smem_dst,
                                            int32_t c0, int32_t c1) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4}], [%2];"
                 :: "r"(smem_addr(smem_dst)), "l"(tmap_ptr(tmap)), "r"(smem_addr(bar)), "r"(c0), "r"(c1)
                 : "memory");
}

__device__ __forceinline__ void tma_load_3d(const void* tmap, uint64_t* bar, void* smem_dst,
                                            int32_t c0, int32_t c1, int32_t c2) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5}], [%2];"
                 :: "r"(smem_addr(smem_dst)), "l"(tmap_ptr(tmap)), "r"(smem_addr(bar)),
                    "r"(c0), "r"(c1), "r"(c2)
                 : "memory");
}

// Copies `bytes` contiguous bytes (a multiple of 16; both addresses 16-byte aligned) from global to
// shared memory, completing that many transaction bytes on `bar`.
__device__ __forceinline__ void bulk_load(uint64_t* bar, void* smem_dst, const void* src, uint32_t bytes) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                 :: "r"(smem_addr(smem_dst)), "l"(src), "r"(bytes), "r"(smem_addr(bar)) : "memory");
}

// Loads one box and writes it, with its barrier signal, to the same shared-memory offsets in every
// CTA of the cluster whose bit is set in `cta_mask`.
__device__ __forceinline__ void tma_load_2d_multicast(const void* tmap, uint64_t* bar, void* smem_dst,
                                                      int32_t c0, int32_t c1, uint16_t cta_mask) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 ".multicast::cluster [%0], [%1, {%4, %5}], [%2], %3;"
                 :: "r"(smem_addr(smem_dst)), "l"(tmap_ptr(tmap)), "r"(smem_addr(bar)), "h"(cta_mask),
                    "r"(c0), "r"(c1)
                 : "memory");
}

__device__ __forceinline__ void tma_load_3d_multicast(const void* tmap, uint64_t* bar, void* smem_dst,
                                                      int32_t c0, int32_t c1, int32_t c2, uint16_t cta_mask) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 ".multicast::cluster [%0], [%1, {%4, %5, %6}], [%2], %3;"
                 :: "r"(smem_addr(smem_dst)), "l"(tmap_ptr(tmap)), "r"(smem_addr(bar)), "h"(cta_mask),
                    "r"(c0), "r"(c1), "r"(c2)
                 : "memory");
}

__device__ __forceinline__ void tma_store_2d(const void* tmap, const void* smem_src, int32_t c0, int32_t c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];"
                 :: "l"(tmap_ptr(tmap)), "r"(smem_addr(smem_src)), "r"(c0), "r"(c1)
                 : "memory");
}

__device__ __forceinline__ void tma_store_3d(const void* tmap, const void* smem_src, int32_t c0, int32_t c1,
                                             int32_t c2) {
    asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];"
                 :: "l"(tmap_ptr(tmap)), "r"(smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2)
                 : "memory");
}

// Adds a box from shared memory into the global tensor (element type from the map), read-modify-write
// in L2: D += box. Each element is added once per call, so results do not depend on timing.
__device__ __forceinline__ void tma_reduce_add_2d(const void* tmap, const void* smem_src, int32_t c0, int32_t c1) {
    asm volatile("cp.reduce.async.bulk.tensor.2d.global.shared::cta.add.tile.bulk_group [%0, {%2, %3}], [%1];"
                 :: "l"(tmap_ptr(tmap)), "r"(smem_addr(smem_src)), "r"(c0), "r"(c1)
                 : "memory");
}

__device__ __forceinline__ void tma_reduce_add_3d(const void* tmap, const void* smem_src, int32_t c0, int32_t c1,
                                                  int32_t c2) {
    asm volatile("cp.reduce.async.bulk.tensor.3d.global.shared::cta.add.tile.bulk_group [%0, {%2, %3, %4}], [%1];"
                 :: "l"(tmap_ptr(tmap)), "r"(smem_addr(smem_src)), "r"(c0), "r"(c1), "r"(c2)
                 : "memory");
}

__device__ __forceinline__ void tma_store_commit() {
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
}

// Waits until at most `kNumPending` committed store groups still read shared memory.
template <int kNumPending>
__device__ __forceinline__ void tma_store_wait() {
    asm volatile("cp.async.bulk.wait_group.read %0;" :: "n"(kNumPending) : "memory");
}

}  // namespace deepgemm::ptx

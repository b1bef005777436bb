#pragma once

#include <deepgemm/common/types.cuh>
#include <deepgemm/ptx/smem.cuh>

// mbarrier wrappers. A barrier is a 64-bit word in shared memory; waits use the phase-parity form,
// so a caller tracks one parity bit per barrier instead of the barrier's state.
namespace deepgemm::ptx {

__device__ __forceinline__ void mbarrier_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(smem_addr(bar)), "r"(count) : "memory");
}

// Makes barrier initialisation visible to the async proxy (TMA) and to the other CTAs of a cluster.
__device__ __forceinline__ void fence_barrier_init() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}

// Orders this thread's ordinary shared-memory writes before later async-proxy (TMA, WGMMA) reads.
__device__ __forceinline__ void fence_proxy_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
                 :: "r"(smem_addr(bar)), "r"(bytes) : "memory");
}

// Raises the transaction bytes the barrier's current phase waits for, without arriving.
__device__ __forceinline__ void mbarrier_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;"
                 :: "r"(smem_addr(bar)), "r"(bytes) : "memory");
}

__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(smem_addr(bar)) : "memory");
}

// The same on a barrier's shared-space address, by the threads where `pred` holds, as one predicated
// instruction (no branch around it).
__device__ __forceinline__ void mbarrier_arrive_if(uint32_t bar_addr, bool pred) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}"
                 :: "r"(bar_addr), "r"(static_cast<uint32_t>(pred)) : "memory");
}

// Arrives on the barrier at the same shared-memory offset in CTA `cta_rank` of this cluster.
// CTA-scope release on purpose: the only thing signalled is that this thread's reads of a stage
// are done (WGMMA reads already retired), and a cluster-scope release compiles to a MEMBAR.GPU per
// arrival, which stalls 2-CTA pipelines.
__device__ __forceinline__ void mbarrier_arrive_cluster(uint64_t* bar, uint32_t cta_rank) {
    asm volatile("{ .reg .b32 remote;\n"
                 "  mapa.shared::cluster.u32 remote, %0, %1;\n"
                 "  mbarrier.arrive.shared::cluster.b64 _, [remote]; }"
                 :: "r"(smem_addr(bar)), "r"(cta_rank) : "memory");
}

__device__ __forceinline__ bool mbarrier_try_wait(uint32_t bar_addr, uint32_t phase_parity) {
    uint32_t done;
    asm volatile("{ .reg .pred p;\n"
                 "  mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "  selp.u32 %0, 1, 0, p; }"
                 : "=r"(done) : "r"(bar_addr), "r"(phase_parity) : "memory");
    return done != 0;
}

// Blocks until the phase with parity `phase_parity` has completed.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t phase_parity) {
    const uint32_t addr = smem_addr(bar);
    while (!mbarrier_try_wait(addr, phase_parity)) {
    }
}

// `mbarrier_wait` on a barrier's shared-space address (32-bit arithmetic for ring indexing).
__device__ __forceinline__ void mbarrier_wait(uint32_t bar_addr, uint32_t phase_parity) {
    while (!mbarrier_try_wait(bar_addr, phase_parity)) {
    }
}

// `mbarrier_wait` with the retry loop written in PTX (its labels are local to the braces), so the
// compiler sees one opaque statement rather than a data-dependent loop. The grouped kernels wait this
// way at the top of their tile loop: the C++ loop there made ptxas keep the mainloop's stage index
// and WGMMA descriptors out of uniform registers. (Not used everywhere: in the busiest configs it
// costs ptxas a spill.)
__device__ __forceinline__ void mbarrier_wait_opaque(uint64_t* bar, uint32_t phase_parity) {
    asm volatile("{ .reg .pred p;\n"
                 "WAIT:\n"
                 "  mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "  @!p bra WAIT; }"
                 :: "r"(smem_addr(bar)), "r"(phase_parity) : "memory");
}

}  // namespace deepgemm::ptx

"""A few odd-shaped FP8 GEMMs for compute-sanitizer (memcheck): every tail path of the kernel.

Run on a Hopper GPU, after the kernels are in the JIT cache (compiling under the sanitizer is slow):

    python tools/sanitize_fp8.py                                  # warm the cache, check results
    compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 python tools/sanitize_fp8.py

`--report-api-errors no`: cuda-bindings probes optional driver entry points through cuGetProcAddress
at import, and the sanitizer reports each missing one as an API error; memory errors still count.
"""

from __future__ import annotations

import torch
from _gpu import require_hopper

import deepgemm
from deepgemm.testing import calc_diff, ref_fp8_gemm_nt

# M tails, N tails (not a multiple of any tile), K tails (not a multiple of 128); the last runs 256x128
# tiles with D staged in 4 column chunks, three of them wholly past N in the last tile column.
SHAPES = [(1, 8, 16), (7, 120, 208), (65, 1000, 7296), (129, 7176, 128), (1000, 2112, 7168),
          (1000, 7176, 2048)]


def main() -> None:
    require_hopper()
    for m, n, k in SHAPES:
        torch.manual_seed(m + n + k)
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        a_q, b_q = deepgemm.per_token_cast_to_fp8(a), deepgemm.per_block_cast_to_fp8(b)
        d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        deepgemm.fp8_gemm_nt(a_q, b_q, d)
        diff = calc_diff(d, ref_fp8_gemm_nt(a_q, b_q))
        print(f"m={m} n={n} k={k}: calc_diff={diff:.2e}")
        assert diff < 1e-5, diff


if __name__ == "__main__":
    main()

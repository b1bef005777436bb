"""deepgemm quickstart: one fine-grained-scaled FP8 GEMM, checked against the reference.

Runs on a Hopper GPU when there is one (the first call JIT-compiles the kernel), else on the CPU path.
Exits with status 1 if the result is not within calc_diff < 1e-5 of the reference.
"""

import sys

import torch

import deepgemm
from deepgemm.testing import calc_diff, ref_fp8_gemm_nt

on_hopper = torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)
device = "cuda" if on_hopper else "cpu"
m, n, k = 128, 2112, 7168

torch.manual_seed(0)
a = torch.randn(m, k, dtype=torch.bfloat16, device=device)  # activations [M, K]
b = torch.randn(n, k, dtype=torch.bfloat16, device=device)  # weights [N, K]

a_fp8, sfa = deepgemm.per_token_cast_to_fp8(a)  # FP8 [M, K], FP32 scales [M, ceil(K/128)]
b_fp8, sfb = deepgemm.per_block_cast_to_fp8(b)  # FP8 [N, K], FP32 scales [ceil(N/128), ceil(K/128)]

d = torch.empty(m, n, dtype=torch.bfloat16, device=device)
deepgemm.fp8_gemm_nt((a_fp8, sfa), (b_fp8, sfb), d)  # d = A · Bᵀ

diff = calc_diff(d, ref_fp8_gemm_nt((a_fp8, sfa), (b_fp8, sfb)))
print(f"device={device} shape=(M={m}, N={n}, K={k}) calc_diff={diff:.2e}")
sys.exit(0 if diff < 1e-5 else 1)

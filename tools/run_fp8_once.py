"""Runs one FP8 GEMM a few times, for profilers (ncu, compute-sanitizer) to attach to.

    ncu --clock-control none -k regex:sm90_fp8 python tools/run_fp8_once.py 4096 7168 16384
    python tools/run_fp8_once.py 4096 7168 16384 --config block_m=256,block_n=128,num_tma_multicast=2
"""

from __future__ import annotations

import argparse

import torch
from _gpu import require_hopper

import deepgemm
from deepgemm.heuristics import GemmShape, select_config
from deepgemm.heuristics.sm90 import make_config
from deepgemm.ops.fp8.kernel import launch_fp8_gemm_nt
from deepgemm.testing import make_dense_inputs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("m", type=int)
    parser.add_argument("n", type=int)
    parser.add_argument("k", type=int)
    parser.add_argument("--config", default="",
                        help="build this config instead of the heuristic's: make_config field=value,...")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    require_hopper()

    inputs = make_dense_inputs(args.m, args.n, args.k, torch.device("cuda"), seed=0)
    a_fp8, b_fp8, sfb = inputs.a, inputs.b, inputs.sfb
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa)
    d = torch.empty(args.m, args.n, device="cuda", dtype=torch.bfloat16)
    shape, num_sms = GemmShape(args.m, args.n, args.k), deepgemm.get_num_sms()
    pairs = (item.split("=") for item in args.config.split(",") if item)
    # make_config's fields: block_m, block_n, num_tma_multicast, multicast_on_a (0/1), num_stages.
    overrides = {key: bool(int(value)) if key == "multicast_on_a" else int(value) for key, value in pairs}
    cfg = make_config(shape, num_sms, **overrides) if overrides else select_config(shape, num_sms)
    print(cfg)
    for _ in range(args.repeat):
        launch_fp8_gemm_nt(a_fp8, sfa, b_fp8, sfb, d, config=cfg)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()

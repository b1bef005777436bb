"""Times every valid FP8 GEMM config on a set of shapes, to check and calibrate the heuristic.

On a Hopper GPU:

    python tools/sweep_fp8.py --json results/sweep.json            # the 18 DeepSeek-V3 shapes
    python tools/sweep_fp8.py --shapes 64,2112,7168 --top 8

Kernels are compiled first in a process pool (CPU only, through the disk cache), then each config is
timed with the profiler (L2 flushed) and checked against the reference. The JSON lists, per shape, the
heuristic's pick, the fastest config and every timing.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor

import torch
from _gpu import require_hopper

import deepgemm
from deepgemm.heuristics.config import GemmConfig, GemmShape
from deepgemm.heuristics.sm90 import candidate_configs, estimated_cycles, select_config
from deepgemm.jit import build_kernel
from deepgemm.ops.fp8.kernel import kernel_spec, launch_fp8_gemm_nt
from deepgemm.testing import bench_kineto, calc_diff, make_dense_inputs

DSV3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]


def _build(job: tuple[int, int, GemmConfig]) -> str:
    n, k, cfg = job
    try:
        spec = kernel_spec(n, k, cfg)
        build_kernel(spec.name, spec.header, spec.template_args, comment=spec.comment)
        return ""
    except Exception as error:  # report and keep sweeping the other configs
        return f"{cfg}: {error}"


def _configs(shape: GemmShape, num_sms: int, top: int) -> list[GemmConfig]:
    ranked = sorted(candidate_configs(shape, num_sms), key=lambda c: estimated_cycles(shape, c))
    chosen = select_config(shape, num_sms)
    picked = ranked[:top] if top else ranked
    return picked if chosen in picked else [chosen, *picked]


def sweep(shapes: list[tuple[int, int, int]], top: int, num_tests: int) -> list[dict]:
    num_sms = deepgemm.get_num_sms()
    plans = [(shape, _configs(GemmShape(*shape), num_sms, top)) for shape in shapes]
    jobs = [(n, k, cfg) for (m, n, k), cfgs in plans for cfg in cfgs]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        failures = [f for f in pool.map(_build, jobs) if f]
    for failure in failures:
        print("build failed:", failure)

    results = [_time_shape(m, n, k, cfgs, num_sms, num_tests) for (m, n, k), cfgs in plans]
    return results


def _time_shape(m: int, n: int, k: int, cfgs: list[GemmConfig], num_sms: int, num_tests: int) -> dict:
    inputs = make_dense_inputs(m, n, k, torch.device("cuda"), seed=0)
    a_fp8, b_fp8, sfb = inputs.a, inputs.b, inputs.sfb
    sfa = deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa)
    ref = inputs.reference("fp8")
    d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    shape = GemmShape(m, n, k)
    timings = []
    for cfg in cfgs:
        def run(cfg: GemmConfig = cfg) -> None:
            launch_fp8_gemm_nt(a_fp8, sfa, b_fp8, sfb, d, config=cfg)

        try:
            d.fill_(float("nan"))
            run()
            diff = calc_diff(d, ref)
            seconds = bench_kineto(run, "sm90_fp8_gemm", num_tests=num_tests)
        except Exception as error:
            print(f"{m}x{n}x{k} {cfg}: {error}")
            continue
        timings.append({"config": cfg.as_dict(), "us": seconds * 1e6,
                        "tflops": 2 * m * n * k / seconds / 1e12, "calc_diff": diff,
                        "model_cycles": estimated_cycles(shape, cfg)[0]})
    timings.sort(key=lambda t: t["us"])
    chosen = select_config(shape, num_sms).as_dict()
    chosen_us = next((t["us"] for t in timings if t["config"] == chosen), None)
    best = timings[0] if timings else None
    if best:
        c = best["config"]
        print(f"{m:>5} {n:>6} {k:>6}  heuristic {chosen_us or float('nan'):8.1f} us  "
              f"best {best['us']:8.1f} us ({best['tflops']:6.0f} TFLOPS) bm={c['block_m']} bn={c['block_n']} "
              f"mc={c['num_tma_multicast']}{'A' if c['multicast_on_a'] else 'B'} st={c['num_stages']} "
              f"grid={c['num_sms']} diff={best['calc_diff']:.1e}", flush=True)
    return {"m": m, "n": n, "k": k, "heuristic": chosen, "heuristic_us": chosen_us, "best": best,
            "timings": timings}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", help="M,N,K[;M,N,K...] (default: the 18 DeepSeek-V3 shapes)")
    parser.add_argument("--top", type=int, default=0, help="time only the N configs the model ranks best")
    parser.add_argument("--num-tests", type=int, default=10)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    require_hopper()
    if args.shapes:
        shapes = [tuple(int(x) for x in s.split(",")) for s in args.shapes.split(";")]
    else:
        shapes = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK]
    results = sweep(shapes, args.top, args.num_tests)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

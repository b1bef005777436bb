"""Times every valid config of a kernel family on a set of shapes, to check and calibrate the heuristic.

On a Hopper GPU:

    python tools/sweep.py --json results/sweep.json                   # FP8 1D2D, the 18 DeepSeek-V3 shapes
    python tools/sweep.py --shapes 64,2112,7168 --top 8
    python tools/sweep.py --family bf16 --major nn --fp16 --shapes 1024,1024,1024
    python tools/sweep.py --family tf32 --shapes "4096,2112,7168;4096,7168,2048" --top 12
    python tools/sweep.py --family tf32x3 --shapes 4096,7168,2048
    python tools/sweep.py --family tf32x3 --shapes fp32 --promotions all --top 3   # every promotion schedule

Kernels are compiled first in a process pool (CPU only, through the disk cache), then each config is
timed with the profiler (L2 flushed; every kernel one call launches, so a split-K reduction or a TF32
operand staging copy counts) and checked against the reference. The JSON lists, per shape, the
heuristic's pick, the fastest config and every timing.

3xTF32 (`--family tf32x3`): `--promotions all` times each tile with every promotion schedule the kernel
takes (`KernelFamily.promotions`: promote every 1, 2 or 4 k-blocks, from one or two accumulator sets), the
`--top` best tiles the model ranks for each. A config counts as correct only if it keeps the accuracy
contract of tests/ops/test_tf32_gpu.py: relative Frobenius error against the FP64 product at most
FP32_ERROR_FACTOR times cuBLAS FP32's (SIMT, `allow_tf32 = False`) on the same inputs, and calc_diff under
FP32_MAX_DIFF; configs that break it are listed and never reported best. `--shapes fp32` is the `fp32`
benchmark suite's shapes (M = 4096 by the DeepSeek-V3 N x K).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
from _gpu import require_hopper

import deepgemm
from deepgemm.heuristics import BF16, FP8_1D2D, GemmConfig, GemmShape
from deepgemm.heuristics.sm90 import candidate_configs, estimated_cycles, select_config
from deepgemm.jit import build_kernel
from deepgemm.ops.bf16 import kernel as bf16_kernel
from deepgemm.ops.fp8 import kernel as fp8_kernel
from deepgemm.ops.tf32 import kernel as tf32_kernel
from deepgemm.testing import bench_kineto, calc_diff, make_bf16_inputs, make_dense_inputs, make_fp32_inputs

DSV3_NK = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048)]
Launch = Callable[[GemmConfig], None]
Check = Callable[[torch.Tensor], tuple[float, bool]]
# calc_diff a config must reach against the family's reference (as the GPU tests require).
MAX_DIFF = 1e-5
# 3xTF32's accuracy contract (tests/ops/test_tf32_gpu.py): calc_diff against the FP64 product, and the
# relative error at most this many times cuBLAS FP32's.
FP32_MAX_DIFF = 1e-8
FP32_ERROR_FACTOR = 8


@dataclass(frozen=True)
class Sweep:
    """What the sweep varies: the family (``fp8``, ``bf16``, ``tf32``, ``tf32x3``) and, for the 16-bit
    family, the storage layout and the operand dtype."""

    family: str = "fp8"
    major: str = "nt"
    fp16: bool = False

    def shape(self, m: int, n: int, k: int) -> GemmShape:
        """The shape the launcher asks the heuristic about."""
        if self.family == "fp8":
            return GemmShape(m, n, k, family=FP8_1D2D)
        if self.family == "bf16":
            return GemmShape(m, n, k, family=BF16, b_mn_major=self.major[1] == "n")
        return tf32_kernel.gemm_shape(m, n, k, self.num_terms)

    @property
    def num_terms(self) -> int:
        return 3 if self.family == "tf32x3" else 1

    def build(self, n: int, k: int, cfg: GemmConfig) -> None:
        """Compiles the GEMM kernel of ``cfg`` into the disk cache (a split's reduction compiles on use)."""
        if self.family == "fp8":
            spec = fp8_kernel.kernel_spec(n, k, cfg)
        elif self.family == "bf16":
            major = self.major
            spec = bf16_kernel.kernel_spec(n, k, cfg, major[0] == "t", major[1] == "n", self.fp16,
                                           torch.bfloat16, False)
        else:
            spec = tf32_kernel.kernel_spec(n, k, cfg, self.num_terms, False)
        build_kernel(spec.name, spec.header, spec.template_args, comment=spec.comment)

    def problem(self, m: int, n: int, k: int) -> tuple[Launch, torch.Tensor, Check]:
        """(launch with a config, d, the check of d: (calc_diff, correct)) on random inputs."""
        cuda = torch.device("cuda")
        if self.family == "fp8":
            inputs = make_dense_inputs(m, n, k, cuda, seed=0)
            sfa = deepgemm.get_mn_major_tma_aligned_tensor(inputs.sfa)
            d = torch.empty(m, n, device=cuda, dtype=torch.bfloat16)
            a, b, sfb = inputs.a, inputs.b, inputs.sfb
            return (lambda cfg: fp8_kernel.launch_fp8_gemm_nt(a, sfa, b, sfb, d, config=cfg),
                    d, _diff_check(inputs.reference("fp8")))
        index = torch.cuda.current_device()
        if self.family == "bf16":
            dtype = torch.float16 if self.fp16 else torch.bfloat16
            inputs = make_bf16_inputs(m, n, k, self.major, cuda, 0, dtype)
            d = torch.empty(m, n, device=cuda, dtype=torch.bfloat16)
            a, b, major = inputs.a, inputs.b, self.major
            return (lambda cfg: bf16_kernel.launch_bf16_gemm(major, a, b, d, None, m, n, k, index, cfg),
                    d, _diff_check(inputs.reference("bf16")))
        inputs = make_fp32_inputs(m, n, k, "nt", cuda, 0)
        d = torch.empty(m, n, device=cuda, dtype=torch.float32)
        check = (_fp32_accuracy_check(inputs.a, inputs.b, inputs.reference("fp64")) if self.num_terms == 3
                 else _diff_check(inputs.reference("tf32")))
        return (lambda cfg: tf32_kernel.launch_tf32_gemm(inputs.a, inputs.b, d, None, self.num_terms, index,
                                                         config=cfg),
                d, check)


def _diff_check(reference: torch.Tensor) -> Check:
    return lambda d: (diff := calc_diff(d, reference), diff < MAX_DIFF)


def _relative_error(d: torch.Tensor, reference: torch.Tensor) -> float:
    return float((d.double() - reference).norm() / reference.norm())


def _fp32_accuracy_check(a: torch.Tensor, b_nk: torch.Tensor, reference: torch.Tensor) -> Check:
    """3xTF32's contract: calc_diff under FP32_MAX_DIFF and the relative error at most FP32_ERROR_FACTOR
    times cuBLAS FP32's on the same operands."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        cublas_error = _relative_error(a @ b_nk.t(), reference)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before

    def check(d: torch.Tensor) -> tuple[float, bool]:
        diff = calc_diff(d, reference)
        accurate = _relative_error(d, reference) <= FP32_ERROR_FACTOR * cublas_error
        return diff, diff < FP32_MAX_DIFF and accurate

    return check


def _build(job: tuple[Sweep, int, int, GemmConfig]) -> str:
    sweep, n, k, cfg = job
    try:
        sweep.build(n, k, cfg)
        return ""
    except Exception as error:  # report and keep sweeping the other configs
        return f"{cfg}: {error}"


def _configs(shape: GemmShape, num_sms: int, top: int, all_promotions: bool = False) -> list[GemmConfig]:
    """The heuristic's pick and the `top` configs the model ranks best (every one with `top` 0); with
    `all_promotions`, the `top` best of each promotion schedule the family's kernel takes."""
    groups = [(p,) for p in shape.family.promotions] if all_promotions else [None]
    picked = []
    for promotions in groups:
        ranked = sorted(candidate_configs(shape, num_sms, promotions),
                        key=lambda c: estimated_cycles(shape, c))
        picked += ranked[:top] if top else ranked
    chosen = select_config(shape, num_sms)
    return picked if chosen in picked else [chosen, *picked]


def run_sweep(sweep: Sweep, shapes: list[tuple[int, int, int]], top: int, num_tests: int,
              all_promotions: bool = False) -> list[dict]:
    num_sms = deepgemm.get_num_sms()
    plans = [((m, n, k), _configs(sweep.shape(m, n, k), num_sms, top, all_promotions)) for m, n, k in shapes]
    jobs = [(sweep, n, k, cfg) for (m, n, k), cfgs in plans for cfg in cfgs]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        failures = [f for f in pool.map(_build, jobs) if f]
    for failure in failures:
        print("build failed:", failure)
    return [_time_shape(sweep, m, n, k, cfgs, num_sms, num_tests) for (m, n, k), cfgs in plans]


def _time_shape(sweep: Sweep, m: int, n: int, k: int, cfgs: list[GemmConfig], num_sms: int,
                num_tests: int) -> dict:
    launch, d, check = sweep.problem(m, n, k)
    shape = sweep.shape(m, n, k)
    timings = []
    for cfg in cfgs:
        try:
            d.fill_(float("nan"))
            launch(cfg)
            diff, correct = check(d)
            seconds = bench_kineto(lambda cfg=cfg: launch(cfg), num_tests=num_tests)
        except Exception as error:
            print(f"{m}x{n}x{k} {cfg}: {error}")
            continue
        timings.append({"config": cfg.as_dict(), "us": seconds * 1e6,
                        "tflops": 2 * m * n * k / seconds / 1e12, "calc_diff": diff,
                        "correct": correct, "model_cycles": estimated_cycles(shape, cfg)[0]})
    timings.sort(key=lambda t: t["us"])
    chosen = select_config(shape, num_sms).as_dict()
    chosen_us = next((t["us"] for t in timings if t["config"] == chosen), None)
    best = next((t for t in timings if t["correct"]), None)
    if best:
        c = best["config"]
        print(f"{m:>5} {n:>6} {k:>6}  heuristic {chosen_us or float('nan'):8.1f} us  "
              f"best {best['us']:8.1f} us ({best['tflops']:6.0f} TFLOPS) bm={c['block_m']} bn={c['block_n']} "
              f"mc={c['num_tma_multicast']}{'A' if c['multicast_on_a'] else 'B'} st={c['num_stages']} "
              f"split={c['split_k']} grid={c['num_sms']} promote={c['promote_every']}x{c['promote_sets']} "
              f"diff={best['calc_diff']:.1e}", flush=True)
    wrong = [t for t in timings if not t["correct"]]
    for t in wrong:
        print(f"{m}x{n}x{k} wrong or not accurate enough (calc_diff {t['calc_diff']:.1e}): {t['config']}")
    return {"m": m, "n": n, "k": k, "sweep": vars(sweep), "heuristic": chosen, "heuristic_us": chosen_us,
            "best": best, "timings": timings}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=("fp8", "bf16", "tf32", "tf32x3"), default="fp8")
    parser.add_argument("--major", choices=("nt", "nn", "tn", "tt"), default="nt",
                        help="storage layout of the 16-bit family's operands")
    parser.add_argument("--fp16", action="store_true", help="FP16 operands for the 16-bit family")
    parser.add_argument("--shapes", help="M,N,K[;M,N,K...], or fp32: the fp32 suite's M = 4096 shapes "
                        "(default: the 18 DeepSeek-V3 shapes)")
    parser.add_argument("--promotions", choices=("heuristic", "all"), default="heuristic",
                        help="tf32x3: the promotion schedules the cost model weighs, or every one the kernel "
                        "takes (--top then applies to each)")
    parser.add_argument("--top", type=int, default=0, help="time only the N configs the model ranks best")
    parser.add_argument("--num-tests", type=int, default=10)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    require_hopper()
    if args.shapes == "fp32":
        shapes = [(4096, n, k) for n, k in DSV3_NK]
    elif args.shapes:
        shapes = [tuple(int(x) for x in s.split(",")) for s in args.shapes.split(";")]
    else:
        shapes = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK]
    sweep = Sweep(args.family, args.major, args.fp16)
    results = run_sweep(sweep, shapes, args.top, args.num_tests, args.promotions == "all")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

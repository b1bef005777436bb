"""What `tools/sweep.py --family tf32x3 --shapes fp32 --promotions all --top 3` plans, on the CPU: every
promotion schedule the kernel takes on each `fp32` suite shape, the model's 3 best tiles for each plus the
heuristic's pick, all valid; and its accuracy check (3xTF32's contract: calc_diff under 1e-8 and at most
8 times cuBLAS FP32's relative error on the same operands) passes an FP32-accurate product and drops one
that is not (the same check, run on CPU tensors)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from deepgemm.heuristics import TF32X3, select_config
from deepgemm.heuristics.config import config_errors

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import sweep  # noqa: E402

NUM_SMS = 132


def test_all_promotions_plan_covers_every_schedule_on_the_fp32_shapes() -> None:
    tf32x3 = sweep.Sweep("tf32x3")
    total = 0
    for n, k in sweep.DSV3_NK:
        shape = tf32x3.shape(4096, n, k)
        cfgs = sweep._configs(shape, NUM_SMS, 3, all_promotions=True)
        assert select_config(shape, NUM_SMS) in cfgs
        assert len(set(cfgs)) == len(cfgs) and all(config_errors(c, shape) == [] for c in cfgs)
        for every, sets in TF32X3.promotions:
            assert sum((c.promote_every, c.promote_sets) == (every, sets) for c in cfgs) == 3
        total += len(cfgs)
    # About a second per config on an H100 (compile in parallel, 25 profiled calls): under 4 minutes.
    assert total == 6 * 6 * 3


def test_default_plan_keeps_the_heuristics_schedules() -> None:
    shape = sweep.Sweep("tf32x3").shape(4096, 2112, 7168)
    weighed = {(every, sets) for every, sets, _ in shape.family.promotion_costs}
    assert all((c.promote_every, c.promote_sets) in weighed for c in sweep._configs(shape, NUM_SMS, 3))


@pytest.mark.parametrize("noise, accurate", [(0.0, True), (1e-4, False)])
def test_fp32_accuracy_check(noise: float, accurate: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(256, 512, generator=generator)
    b_nk = torch.randn(128, 512, generator=generator)
    reference = a.double() @ b_nk.double().t()
    check = sweep._fp32_accuracy_check(a, b_nk, reference)
    d = reference.float() * (1 + noise * torch.randn(reference.shape, generator=generator))
    diff, correct = check(d)
    assert correct is accurate and diff >= 0

"""Config selection for the sm_90 FP8 GEMM: every config chosen for the shape suites is one the kernel can
run (rules, shared memory, grid, multicast pairing, swizzle), the choice is deterministic and cached, the
rule functions agree with hand-computed values, and `DG_PRINT_CONFIGS=1` prints each new shape's config."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from deepgemm.heuristics import BF16, FP8_1D2D, sm90
from deepgemm.heuristics.config import (
    CONTIGUOUS,
    DENSE,
    MASKED,
    GemmConfig,
    GemmShape,
    ceil_div,
    config_errors,
    swizzle_d_bytes,
)
from deepgemm.heuristics.families import fp8_1d2d
from deepgemm.heuristics.families.fp8_1d2d import uniform_scale_b
from deepgemm.heuristics.sm90 import candidate_configs, select_config

# sm_90's opt-in dynamic shared memory per block (227 KB), written out rather than imported so that a
# change of the heuristic's constant cannot make the check vacuous.
SMEM_LIMIT = 232448
DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
DSV3_SHAPES = tuple(GemmShape(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK)
EDGE_SHAPES = tuple(GemmShape(m, n, k) for m, n, k in itertools.product(
    (1, 7, 63, 65, 127, 129, 1000, 4097), (8, 120, 1000, 7176), (16, 128, 208, 7168, 7296)))
SUITES = {"dsv3": DSV3_SHAPES, "edge": EDGE_SHAPES}
SM_COUNTS = (132, 114, 78, 1, 2, 131)
# Tiles per rasterisation group of the kernel's TileScheduler (kNumBlocksPerGroup).
SCHEDULER_GROUP = 16


def with_out_bytes(shape: GemmShape, out_bytes: int) -> GemmShape:
    return GemmShape(shape.m, shape.n, shape.k, out_bytes)


def make_config(block_m=128, block_n=128, num_stages=4, num_tma_multicast=1, multicast_on_a=True,
                swizzle=None, num_sms=132, out_bytes=2, load_batch=1) -> GemmConfig:
    swizzle = swizzle_d_bytes(block_n, out_bytes) if swizzle is None else swizzle
    return GemmConfig(block_m, block_n, num_stages, num_tma_multicast, multicast_on_a, swizzle, num_sms,
                      out_bytes, load_batch=load_batch)


def scheduled_tiles(shape: GemmShape, cfg: GemmConfig, cta: int) -> list[tuple[int, int]]:
    """The (m_block, n_block) tiles CTA `cta` runs, in order: a mirror of `TileScheduler::next` as
    instantiated by the kernel (grouped along N unless multicasting B)."""
    num_m, num_n = ceil_div(shape.m, cfg.block_m), ceil_div(shape.n, cfg.block_n)
    along_n = cfg.multicast_on_a or cfg.num_tma_multicast == 1
    num_grouped, num_other = (num_n, num_m) if along_n else (num_m, num_n)
    tiles = []
    for block in range(cta, num_m * num_n, cfg.num_sms):
        blocks_per_group = SCHEDULER_GROUP * num_other
        group = block // blocks_per_group
        first = group * SCHEDULER_GROUP
        width = min(SCHEDULER_GROUP, num_grouped - first)
        in_group = block - group * blocks_per_group
        other, grouped = in_group // width, first + in_group % width
        tiles.append((other, grouped) if along_n else (grouped, other))
    return tiles


def multicast_problems(shape: GemmShape, cfg: GemmConfig) -> list[str]:
    """Why the 2-CTA clusters of `cfg` would not share their multicast operand on every tile."""
    if cfg.num_sms % 2:
        return [f"2-CTA multicast with an odd grid of {cfg.num_sms}"]
    problems, seen = [], set()
    for cta in range(0, cfg.num_sms, 2):
        first, second = scheduled_tiles(shape, cfg, cta), scheduled_tiles(shape, cfg, cta + 1)
        seen.update(first, second)
        if len(first) != len(second):
            problems.append(f"CTAs {cta} and {cta + 1} run {len(first)} and {len(second)} tiles")
            continue
        shared = 0 if cfg.multicast_on_a else 1  # A is shared along m_block, B along n_block
        for a, b in zip(first, second, strict=True):
            if a[shared] != b[shared]:
                problems.append(f"CTAs {cta} and {cta + 1} run tiles {a} and {b}: nothing to multicast")
                break
    num_tiles = ceil_div(shape.m, cfg.block_m) * ceil_div(shape.n, cfg.block_n)
    if len(seen) != num_tiles:
        problems.append(f"the scheduler covers {len(seen)} of {num_tiles} tiles")
    return problems


def selection_problems(shape: GemmShape, num_sms: int, cfg: GemmConfig) -> list[str]:
    """Everything wrong with `cfg` as the choice for `shape` on `num_sms` SMs."""
    problems = list(config_errors(cfg, shape))
    smem = cfg.smem_bytes(shape.k)
    if smem > SMEM_LIMIT:
        problems.append(f"{smem} B of shared memory")
    # The kernel runs as many stages as fit (up to the family's max_stages): one more must not fit.
    if cfg.num_stages < FP8_1D2D.max_stages and fp8_1d2d.smem_bytes(
            cfg.block_m, cfg.block_n, cfg.num_stages + 1, shape.k, cfg.out_bytes,
            num_d_chunks=cfg.num_d_chunks) <= SMEM_LIMIT:
        problems.append(f"num_stages={cfg.num_stages} leaves room for another stage")
    # D is staged in chunks only where the whole tile leaves room for fewer than 4 stages.
    if cfg.num_d_chunks > 1 and fp8_1d2d.smem_bytes(cfg.block_m, cfg.block_n, 4, shape.k,
                                                   cfg.out_bytes) <= SMEM_LIMIT:
        problems.append(f"num_d_chunks={cfg.num_d_chunks} where 4 stages fit the whole D tile")
    # Split-K's work units are a tile's K slices: the grid rules count them as tiles.
    num_tiles = ceil_div(shape.m, cfg.block_m) * ceil_div(shape.n, cfg.block_n) * cfg.split_k
    if not 1 <= cfg.num_sms <= min(num_sms, num_tiles):
        problems.append(f"grid {cfg.num_sms} for {num_sms} SMs and {num_tiles} tiles")
    # The grid is the smallest (even, with multicast) one that runs the tiles in the fewest waves.
    num_waves = ceil_div(num_tiles, num_sms)
    if ceil_div(num_tiles, cfg.num_sms) != num_waves:
        problems.append(f"grid {cfg.num_sms} adds a wave to the {num_waves} of {num_sms} SMs")
    smaller = cfg.num_sms - cfg.num_tma_multicast
    if smaller >= 1 and ceil_div(num_tiles, smaller) == num_waves:
        problems.append(f"grid {cfg.num_sms} where {smaller} CTAs run the tiles in as many waves")
    if cfg.out_bytes != shape.out_bytes:
        problems.append(f"out_bytes={cfg.out_bytes}")
    row_bytes = cfg.block_n // cfg.num_d_chunks * cfg.out_bytes
    expected_swizzle = max((s for s in (32, 64, 128) if row_bytes % s == 0), default=0)
    if cfg.swizzle_d_bytes != expected_swizzle:
        problems.append(f"swizzle_d_bytes={cfg.swizzle_d_bytes}, expected {expected_swizzle}")
    if cfg.num_tma_multicast == 2:
        problems += multicast_problems(shape, cfg)
    return problems


@pytest.mark.parametrize("out_bytes", [2, 4], ids=["bf16", "fp32"])
@pytest.mark.parametrize("num_sms", SM_COUNTS)
@pytest.mark.parametrize("suite", SUITES)
def test_selected_configs_are_valid(suite, num_sms, out_bytes):
    failures = []
    for base in SUITES[suite]:
        shape = with_out_bytes(base, out_bytes)
        cfg = select_config(shape, num_sms)
        problems = selection_problems(shape, num_sms, cfg)
        failures += [f"{shape} on {num_sms} SMs -> {cfg}: {p}" for p in problems]
    assert failures == []


@pytest.mark.parametrize("num_sms", [1, 131])
def test_no_multicast_with_an_odd_grid(num_sms):
    # An odd SM budget still allows multicast when the tiles fit in an even grid below it.
    shapes = [with_out_bytes(s, ob) for s in DSV3_SHAPES + EDGE_SHAPES for ob in (2, 4)]
    chosen = [select_config(s, num_sms) for s in shapes]
    assert [c for c in chosen if c.num_tma_multicast != 1 and c.num_sms % 2] == []
    assert all(c.num_sms < num_sms for c in chosen if c.num_tma_multicast != 1)


@pytest.mark.parametrize(("m", "n", "block_m", "block_n", "multicast", "grid"), [
    (4096, 7168, 256, 128, 1, 128),  # 896 tiles: 7 waves of 128 instead of 6.8 of 132
    (4096, 2112, 128, 192, 1, 118),  # 352 tiles: 3 waves of 118 (the last 116)
    (4096, 2048, 128, 128, 2, 128),  # 512 tiles: 4 waves of 128
    (4096, 4352, 256, 128, 2, 110),  # 544 tiles: 5 waves of 109, one more CTA for the 2-CTA clusters
    (4224, 1024, 128, 128, 2, 132),  # 264 tiles: exactly 2 waves of 132
    (64, 2112, 64, 32, 1, 66),  # one wave: one CTA per tile
])
def test_grid_spreads_the_last_wave(m, n, block_m, block_n, multicast, grid):
    shape = GemmShape(m, n, 7168)
    cfg = sm90.make_config(shape, 132, block_m, block_n, multicast)
    assert cfg.num_sms == grid


def test_as_dict_names_the_family_and_is_json_ready():
    import json

    cfg = select_config(GemmShape(4096, 7168, 2048, family=BF16), 132)
    record = cfg.as_dict()
    assert record["family"] == "bf16" and record["block_n"] == cfg.block_n
    assert set(record) == {f.name for f in dataclasses.fields(cfg)}
    assert json.loads(json.dumps(record)) == record
    assert "KernelFamily('bf16')" in cfg.kernel_repr()


def test_kernel_repr_leaves_out_the_grid():
    # M sizes the grid at run time: shapes that differ only in it must share one compiled kernel.
    from deepgemm.ops.bf16 import kernel as bf16_kernel
    from deepgemm.ops.fp8 import kernel as fp8_kernel

    cfg = sm90.make_config(GemmShape(4096, 7168, 16384), 132, 256, 128)
    other = replace(cfg, num_sms=132)
    assert cfg.num_sms == 128 and cfg.kernel_repr() == other.kernel_repr()
    assert "num_sms" not in cfg.kernel_repr() and "num_d_chunks=1" in cfg.kernel_repr()
    assert replace(cfg, num_stages=2).kernel_repr() != cfg.kernel_repr()
    assert (fp8_kernel.kernel_spec(7168, 16384, cfg).comment
            == fp8_kernel.kernel_spec(7168, 16384, other).comment)
    flags = (False, False, False, torch.bfloat16, False)
    assert (bf16_kernel.kernel_spec(7168, 16384, cfg, *flags).comment
            == bf16_kernel.kernel_spec(7168, 16384, other, *flags).comment)


@pytest.mark.parametrize(("rows", "layout", "grid"), [
    (256, "masked", 132),  # 256 rows per expert: 4 x 2 x 32 tiles, only known on the GPU
    (32768, "contiguous", 132),  # 8192 estimated tiles; the experts' sizes decide the real count
    (256, "contiguous", 64),  # fewer estimated tiles than SMs: one CTA each
])
def test_grouped_grid_is_not_sized_by_waves(rows, layout, grid):
    shape = GemmShape(rows, 4096, 7168, 2, 4, layout)
    assert sm90.make_config(shape, 132, 128, 128).num_sms == grid


def test_multicast_is_chosen_when_the_model_says_it_pays():
    # Multicast configs are always candidates. On the measured H100 they never beat the same tile
    # without multicast on the DSV3 shapes, so the fitted model does not pick them there; when L2
    # bandwidth is the bottleneck (simulated by a slow L2), the model must pick them, on A and on B
    # (over the FP8 and the 16-bit kernels' tiles).
    large = [s for s in DSV3_SHAPES if s.m == 4096]
    large += [replace(s, family=BF16) for s in large]
    for shape in large:
        assert any(c.num_tma_multicast == 2 for c in candidate_configs(shape, 132))
    slow_l2 = {family: replace(family, l2_bytes_per_cycle_per_sm=8) for family in (FP8_1D2D, BF16)}
    chosen = [sm90.select_config(replace(s, family=slow_l2[s.family]), 132) for s in large]
    assert all(c.num_tma_multicast == 2 for c in chosen)
    assert {c.multicast_on_a for c in chosen} == {True, False}


def test_selection_is_cached():
    shape = GemmShape(4096, 7168, 2048)
    first = select_config(shape, 132)
    hits = select_config.cache_info().hits
    assert select_config(GemmShape(4096, 7168, 2048), 132) is first
    assert select_config.cache_info().hits == hits + 1
    # A recomputation outside the cache agrees.
    assert select_config.__wrapped__(shape, 132) == first


def test_selection_takes_no_timings(monkeypatch):
    def no_clock():
        raise AssertionError("config selection read a clock")

    for name in ("time", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "process_time"):
        monkeypatch.setattr(time, name, no_clock)
    assert select_config.__wrapped__(GemmShape(128, 24576, 1536), 132).block_m in (64, 128, 256)


def test_selection_is_deterministic_across_processes():
    # A fresh interpreter with another hash seed must choose exactly the same configs.
    shapes = [with_out_bytes(s, ob) for s in DSV3_SHAPES + EDGE_SHAPES[::7] for ob in (2, 4)]
    code = (
        "import sys\n"
        "from deepgemm.heuristics import GemmShape, select_config\n"
        f"for m, n, k, ob in {[(s.m, s.n, s.k, s.out_bytes) for s in shapes]!r}:\n"
        f"    for sms in {SM_COUNTS!r}:\n"
        "        print(repr(select_config(GemmShape(m, n, k, ob), sms)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": "12345"})
    here = [repr(select_config(s, sms)) for s in shapes for sms in SM_COUNTS]
    assert result.stdout.splitlines() == here


# --- The rule functions on hand-computed values -------------------------------------------------------


@pytest.mark.parametrize("block_m, block_n, stages, k, out_bytes, expected", [
    # D 128*128*2 = 32768; stage 16384 A + 16384 B + 512 A scales = 33280; B scales: max(2 warpgroups,
    # 1 + ceil(5 / 56)) = 2 buffers x 56 k-blocks x 4 B = 448; 5 * 2 barriers of 8 B
    (128, 128, 5, 7168, 2, 32768 + 5 * 33280 + 448 + 5 * 16),
    # 57 k-blocks: 2 * 57 * 4 = 456 B of B scales
    (128, 128, 3, 7296, 2, 32768 + 3 * 33280 + 456 + 3 * 16),
    # D 256*128*2 = 65536; stage 32768 + 16384 + 1024 = 50176
    (256, 128, 3, 7168, 2, 65536 + 3 * 50176 + 448 + 3 * 16),
    # block_n 192 straddles scale blocks: two B scales per k-block, max(1, 1 + ceil(6 / 12)) = 2 buffers:
    # 2 * 12 * 2 * 4 = 192; stage 8192 + 24576 + 256
    (64, 192, 6, 1536, 2, 24576 + 6 * 33024 + 192 + 6 * 16),
    # FP32 out: D 64*144*4 = 36864; stage 8192 + 18432 + 256 = 26880; 2 * 57 * 2 * 4 = 912
    (64, 144, 4, 7296, 4, 36864 + 4 * 26880 + 912 + 4 * 16),
    # D 64*8*2 = 1024; stage 8192 + 1024 + 256; one k-block, so a producer 2 stages ahead is 2 tiles
    # ahead: 1 + 2 = 3 buffers of 4 B, rounded up to 8
    (64, 8, 2, 16, 2, 1024 + 2 * 9472 + 16 + 2 * 16),
])
def test_smem_bytes_hand_computed(block_m, block_n, stages, k, out_bytes, expected):
    assert fp8_1d2d.smem_bytes(block_m, block_n, stages, k, out_bytes) == expected
    cfg = make_config(block_m, block_n, stages, out_bytes=out_bytes)
    assert cfg.smem_bytes(k) == expected


@pytest.mark.parametrize("block_m, block_n, stages, k, expected", [
    # Grouped: rows of B scales padded to 4 floats (the masked kind's bulk copy). D 64*32*2 = 4096; stage
    # 8192 + 4096 + 256 = 12544; 3 k-blocks -> 4 floats, 1 + ceil(16 / 3) = 7 buffers: 7 * 4 * 4 = 112;
    # 16 * 2 barriers of 8 B and 16 tile slots of 16 B
    (64, 32, 16, 272, 4096 + 16 * 12544 + 112 + 16 * 16 + 16 * 16),
    # block_n 192 straddles: 5 k-blocks -> 8 floats, two rows, max(2, 1 + ceil(3 / 5)) = 2 buffers:
    # 2 * 2 * 8 * 4 = 128; D 128*192*2 = 49152; stage 16384 + 24576 + 512 = 41472
    (128, 192, 3, 640, 49152 + 3 * 41472 + 128 + 3 * 16 + 3 * 16),
    # 56 k-blocks, a multiple of 4: no padding, as dense (448) plus the tile slots
    (128, 128, 5, 7168, 32768 + 5 * 33280 + 448 + 5 * 16 + 5 * 16),
])
def test_grouped_smem_bytes_pad_b_scale_rows(block_m, block_n, stages, k, expected):
    assert fp8_1d2d.smem_bytes(block_m, block_n, stages, k, 2, grouped=True) == expected
    # Dense: unpadded rows (3 k-blocks: 7 * 3 * 4 = 84, rounded up to 88), no tile slots.
    assert fp8_1d2d.smem_bytes(64, 32, 16, 272, 2) == 4096 + 16 * 12544 + 88 + 16 * 16
    assert fp8_1d2d.masked_sfb_row_floats(3) == 4 and fp8_1d2d.masked_sfb_row_floats(56) == 56


def test_smem_limit_is_enforced_at_the_boundary():
    shape = GemmShape(4096, 7168, 7168)
    # 5 stages: 199696 B; 6 stages: 32768 + 6 * 33280 + 448 + 6 * 16 = 232992 B > 232448 B.
    assert config_errors(make_config(128, 128, 5), shape) == []
    errors = config_errors(make_config(128, 128, 6), shape)
    assert len(errors) == 1 and "232992" in errors[0] and "232448" in errors[0]


@pytest.mark.parametrize("block_n", [144, 160, 192])
def test_block_n_straddling_two_scale_blocks_is_valid(block_n):
    assert config_errors(make_config(64, block_n, 3), GemmShape(128, 7168, 2048)) == []


@pytest.mark.parametrize("block_n", [176, 208, 224])
def test_block_n_straddling_three_scale_blocks_is_invalid(block_n):
    errors = config_errors(make_config(64, block_n, 3), GemmShape(128, 7168, 2048))
    assert any("straddle" in e for e in errors)


@pytest.mark.parametrize("block_n", range(8, 257, 8))
def test_straddle_rule_matches_the_tiles(block_n):
    # Brute force: the most 128-column scale blocks any tile of width block_n touches.
    most = max(len({col // 128 for col in range(start, start + block_n)})
               for start in range(0, 128 * block_n, block_n))
    errors = config_errors(make_config(64, block_n, 2), GemmShape(64, 8192, 128))
    assert any("straddle" in e for e in errors) == (most > 2)
    assert uniform_scale_b(block_n) == (most == 1)


@pytest.mark.parametrize("block_n, expected", [(8, True), (16, True), (64, True), (128, True), (48, False),
                                               (96, False), (144, False), (256, False)])
def test_uniform_scale_b(block_n, expected):
    assert uniform_scale_b(block_n) is expected


@pytest.mark.parametrize("block_m, block_n, registers", [(64, 16, 16), (64, 192, 192), (128, 192, 192),
                                                        (256, 128, 192), (256, 144, 216), (128, 256, 256)])
def test_accumulator_registers(block_m, block_n, registers):
    assert FP8_1D2D.accumulator_registers(block_m, block_n) == registers


@pytest.mark.parametrize("block_m, block_n, valid", [
    (256, 128, True), (256, 136, False), (256, 144, False), (256, 160, False), (256, 192, False),
    (128, 192, True), (64, 192, True), (128, 256, False), (64, 256, False),
])
def test_register_rule(block_m, block_n, valid):
    shape = GemmShape(4096, 7168, 512)
    errors = [e for e in config_errors(make_config(block_m, block_n, 2), shape) if "register" in e]
    assert (errors == []) is valid


@pytest.mark.parametrize("block_n, out_bytes, expected", [
    (16, 2, 32), (32, 2, 64), (64, 2, 128), (112, 2, 32), (144, 2, 32), (160, 2, 64), (192, 2, 128),
    (8, 2, 0), (120, 2, 0), (8, 4, 32), (24, 4, 32), (112, 4, 64), (160, 4, 128),
])
def test_swizzle_d_bytes(block_n, out_bytes, expected):
    assert swizzle_d_bytes(block_n, out_bytes) == expected


def test_wrong_swizzle_is_invalid():
    errors = config_errors(make_config(128, 160, 2, swizzle=128), GemmShape(4096, 7168, 2048))
    assert any("swizzle" in e for e in errors)


@pytest.mark.parametrize("overrides, fragment", [
    ({"block_m": 32}, "block_m"),
    ({"block_n": 12}, "block_n=12"),
    ({"block_n": 264}, "block_n=264"),
    ({"num_stages": 1}, "num_stages"),
    ({"num_tma_multicast": 4}, "num_tma_multicast"),
    ({"num_sms": 0}, "at least one CTA"),
    ({"num_tma_multicast": 2, "num_sms": 131}, "even grid"),
    # 7168 / 160 -> 45 n-blocks: multicasting A would pair CTAs on different m-blocks.
    ({"block_n": 160, "num_tma_multicast": 2, "multicast_on_a": True}, "n-blocks"),
    # 4097 / 128 -> 33 m-blocks.
    ({"num_tma_multicast": 2, "multicast_on_a": False}, "m-blocks"),
])
def test_rule_violations_are_reported(overrides, fragment):
    args = {"block_m": 128, "block_n": 128, "num_stages": 3} | overrides
    errors = config_errors(make_config(**args), GemmShape(4097, 7168, 2048))
    assert any(fragment in e for e in errors), errors


def test_output_size_mismatch_is_invalid():
    errors = config_errors(make_config(128, 128, 3, out_bytes=2), GemmShape(128, 7168, 2048, out_bytes=4))
    assert any("output element size" in e for e in errors)


def test_multicast_rule_agrees_with_the_scheduler():
    # The evenness rules in config_errors are exactly what keeps cluster pairs on a shared operand tile.
    cases = itertools.product((129, 256, 4097), (1000, 2112, 7168), (64, 128), (112, 128))
    for m, n, block_m, block_n in cases:
        shape = GemmShape(m, n, 2048)
        for on_a in (True, False):
            cfg = make_config(block_m, block_n, 2, num_tma_multicast=2, multicast_on_a=on_a, num_sms=8)
            rule_ok = not any("-blocks" in e for e in config_errors(cfg, shape))
            assert rule_ok == (multicast_problems(shape, cfg) == []), (shape, cfg)


def test_block_size_and_threads():
    assert make_config(64, 128).num_threads == 256
    assert make_config(128, 128).num_threads == 384
    assert make_config(256, 128).num_threads == 384


# --- DG_PRINT_CONFIGS ----------------------------------------------------------------------------------


@pytest.fixture
def choose_config(monkeypatch):
    from deepgemm.ops.common import launch

    monkeypatch.delenv("DG_PRINT_CONFIGS", raising=False)
    launch.choose_config.cache_clear()
    yield launch.choose_config
    launch.choose_config.cache_clear()


def test_print_configs_prints_once_per_shape(choose_config, monkeypatch, capsys):
    monkeypatch.setenv("DG_PRINT_CONFIGS", "1")
    shapes = [GemmShape(128, 7168, 2048), GemmShape(4096, 7168, 2048, out_bytes=4)]
    for _ in range(3):
        for shape in shapes:
            assert choose_config(shape, 132) == select_config(shape, 132)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(shapes)
    for line, shape in zip(lines, shapes, strict=True):
        assert f"m={shape.m} n={shape.n} k={shape.k}" in line
        assert str(select_config(shape, 132)) in line


def test_print_configs_off_prints_nothing(choose_config, capsys):
    choose_config(GemmShape(64, 2112, 7168), 132)
    assert capsys.readouterr().out == ""


LARGE_16BIT = tuple(GemmShape(4096, n, k, family=BF16, b_mn_major=b_mn_major)
                    for n, k in DSV3_NK for b_mn_major in (False, True))


@pytest.mark.parametrize("shape", LARGE_16BIT, ids=str)
def test_16bit_tiles_stage_d_in_two_chunks_only_for_a_fourth_stage(shape):
    cfg = select_config(shape, 132)
    assert not config_errors(cfg, shape)
    assert cfg.num_stages >= 4, cfg
    whole = sm90.make_config(shape, 132, cfg.block_m, cfg.block_n, cfg.num_tma_multicast, cfg.multicast_on_a)
    assert (cfg.num_d_chunks == 2) == (whole.num_stages < 4), (cfg, whole)
    assert cfg.smem_bytes(shape.k) <= SMEM_LIMIT


def test_16bit_smem_with_d_in_two_chunks_hand_computed():
    # 128x256 BF16 tile: half of the 64 KB D tile, four stages of (128 + 256) x 128 bytes and two
    # 8-byte barriers each.
    assert BF16.smem_bytes(128, 256, 4, 7168, 2, False, 2) == 32768 + 4 * (49152 + 16)
    assert BF16.smem_bytes(128, 256, 3, 7168, 2, False, 1) == 65536 + 3 * (49152 + 16)


@pytest.mark.parametrize("family, block_n, num_d_chunks, fragment", [
    (FP8_1D2D, 128, 3, "must be 1, 2 or 4"),
    (BF16, 128, 8, "must be 1, 2 or 4"),
    (BF16, 200, 2, "8-column groups"),
], ids=str)
def test_d_chunk_rule_violations_are_reported(family, block_n, num_d_chunks, fragment):
    shape = GemmShape(4096, 7168, 2048, family=family)
    cfg = GemmConfig(128, block_n, 3, 1, True, swizzle_d_bytes(block_n // num_d_chunks, 2), 132,
                     family=family, num_d_chunks=num_d_chunks)
    assert any(fragment in e for e in config_errors(cfg, shape)), config_errors(cfg, shape)


def test_d_swizzle_follows_the_staged_chunk():
    # 192 BF16 columns staged whole are 384-byte rows (128-byte swizzle); a 96-column chunk's rows
    # are 192 bytes, which only the 64-byte swizzle divides.
    shape = GemmShape(4096, 7168, 2048, family=BF16)
    assert sm90.make_config(shape, 132, 128, 192).swizzle_d_bytes == 128
    cfg = sm90.make_config(shape, 132, 128, 192, num_d_chunks=2)
    assert cfg.swizzle_d_bytes == 64 and cfg.d_store_cols == 32 and not config_errors(cfg, shape)


@pytest.mark.parametrize("family", [FP8_1D2D, BF16], ids=str)
def test_loads_are_batched_only_for_deep_single_warpgroup_tiles_over_long_k(family):
    # The M <= 128 DeepSeek-V3 shapes whose tiles have one consumer warpgroup, 13+ stages and K of
    # 56+ 128-byte blocks per row batch their loads by 4; every other selection loads one k-block at
    # a time.
    for m, (n, k) in itertools.product((64, 128, 4096), DSV3_NK):
        shape = GemmShape(m, n, k, family=family)
        cfg = select_config(shape, 132)
        deep_long = (cfg.block_m == 64 and cfg.num_stages >= 13
                     and ceil_div(k * family.operand_bytes, 128) >= sm90.LOAD_BATCH_MIN_K_BLOCKS)
        assert cfg.load_batch == (sm90.LOAD_BATCH if deep_long else 1), cfg
        assert not config_errors(cfg, shape)
    assert select_config(GemmShape(64, 2112, 7168, family=family), 132).load_batch == 4


@pytest.mark.parametrize("layout", [DENSE, CONTIGUOUS])
def test_fp8_multicasts_256_row_tiles_over_long_k_and_wide_tiles_over_short_k(layout):
    # Among the DeepSeek-V3 FP8 selections (and MoE experts of those shapes in the contiguous layout),
    # where every SM runs two or more tiles: the 256-row tiles with K of 56+ 128-byte blocks multicast
    # where their pair can share an m-block (an even number of n-blocks), on A (the larger operand;
    # the only one the contiguous layout may share); so do 128x192 tiles over K of at most 16 blocks
    # (in the contiguous layout where the pair can share A); nothing else does.
    for m, (n, k) in itertools.product((64, 128, 1024, 4096, 16384), DSV3_NK):
        shape = GemmShape(m, n, k) if layout == DENSE else GemmShape(8 * m, n, k, num_groups=8, layout=layout)
        cfg = select_config(shape, 132)
        waves = shape.num_tiles(cfg.block_m, cfg.block_n) >= sm90.MULTICAST_MIN_WAVES * 132
        long_tall = (waves and cfg.block_m == sm90.MULTICAST_FREE_BLOCK_M
                     and ceil_div(n, cfg.block_n) % 2 == 0 and k // 128 >= sm90.MULTICAST_FREE_MIN_K_BLOCKS)
        wide_short = (waves and (cfg.block_m, cfg.block_n) == FP8_1D2D.wide_short_k_tile
                      and k // 128 <= sm90.SHORT_K_MAX_K_BLOCKS
                      and (layout == DENSE or ceil_div(n, cfg.block_n) % 2 == 0))
        if long_tall:
            assert (cfg.num_tma_multicast, cfg.multicast_on_a) == (2, True), cfg
        elif wide_short:
            assert cfg.num_tma_multicast == 2 and (cfg.multicast_on_a or layout == DENSE), cfg
        else:
            assert (cfg.num_tma_multicast, cfg.multicast_on_a) == (1, True), cfg
    assert select_config(GemmShape(4096, 7168, 16384), 132).num_tma_multicast == 2
    contiguous = GemmShape(4 * 8192, 4096, 7168, num_groups=4, layout=CONTIGUOUS)
    assert select_config(contiguous, 132).num_tma_multicast == 2
    # About one wave of tiles: no multicast (measured 1.5-2.6% faster without it).
    for shape in (GemmShape(1024, 4096, 7168), GemmShape(2048, 4096, 7168), GemmShape(256, 24576, 1536)):
        assert select_config(shape, 132).num_tma_multicast == 1


@pytest.mark.parametrize(("layout", "m", "n", "k", "tile"), [
    (DENSE, 16384, 7168, 2048, (128, 192)),  # measured 4.3% faster than 256x128
    (DENSE, 4096, 7168, 2048, (256, 128)),  # waves favour 256x128 (measured 2.6% faster)
    (DENSE, 8192, 4096, 7168, (256, 128)),  # long K: 256x128 measured 3.5% faster
    (CONTIGUOUS, 4 * 8192, 7168, 2048, (128, 192)),  # measured 0.5-4% faster
    (CONTIGUOUS, 4 * 8192, 4096, 7168, (256, 128)),
])
def test_fp8_wide_tiles_over_short_k(layout, m, n, k, tile):
    shape = GemmShape(m, n, k, num_groups=4 if layout == CONTIGUOUS else 1, layout=layout)
    cfg = select_config(shape, 132)
    assert (cfg.block_m, cfg.block_n) == tile, cfg


@pytest.mark.parametrize("family", [FP8_1D2D, BF16], ids=str)
def test_grouped_selections_multicast_only_fp8_contiguous_a_from_256_row_tiles(family):
    # The masked layout never multicasts; the contiguous one shares only A, and the heuristic does so
    # only for FP8 256-row tiles and 128x192 tiles over short K (measured: other 128-row tiles and the
    # 16-bit kernel gained nothing).
    for g, m, (n, k) in itertools.product((1, 8, 32), (64, 512, 4096), DSV3_NK):
        masked = select_config(GemmShape(m, n, k, num_groups=g, layout=MASKED, family=family), 132)
        assert masked.num_tma_multicast == 1, masked
        shape = GemmShape(g * m, n, k, num_groups=g, layout=CONTIGUOUS, family=family)
        contiguous = select_config(shape, 132)
        if contiguous.num_tma_multicast > 1:
            wide_short = ((contiguous.block_m, contiguous.block_n) == FP8_1D2D.wide_short_k_tile
                          and k // 128 <= sm90.SHORT_K_MAX_K_BLOCKS)
            assert family is FP8_1D2D and contiguous.multicast_on_a, contiguous
            assert contiguous.block_m == 256 or wide_short, contiguous


def test_contiguous_layout_shares_only_a():
    shape = GemmShape(4 * 8192, 4096, 7168, num_groups=4, layout=CONTIGUOUS)
    assert not config_errors(sm90.make_config(shape, 132, 256, 128, 2, True), shape)
    on_b = sm90.make_config(shape, 132, 256, 128, 2, False)
    assert any("multicasts only A" in e for e in config_errors(on_b, shape))
    masked = GemmShape(1024, 4096, 7168, num_groups=4, layout=MASKED)
    assert any("masked layout does not multicast" in e
               for e in config_errors(sm90.make_config(masked, 132, 256, 128, 2, True), masked))


def test_loads_are_not_batched_for_grouped_or_n_major_b():
    masked = GemmShape(64, 2112, 7168, num_groups=8, layout=MASKED)
    assert select_config(masked, 132).load_batch == 1
    n_major = GemmShape(64, 2112, 7168, family=BF16, b_mn_major=True)
    assert select_config(n_major, 132).load_batch == 1


@pytest.mark.parametrize("load_batch, num_stages, valid", [(1, 2, True), (3, 4, True), (4, 4, False),
                                                           (0, 4, False)])
def test_load_batch_rule(load_batch, num_stages, valid):
    cfg = make_config(64, 64, num_stages, load_batch=load_batch)
    errors = config_errors(cfg, GemmShape(64, 2112, 7168))
    assert (not errors) == valid, errors
    if not valid:
        assert any("load_batch" in e for e in errors), errors

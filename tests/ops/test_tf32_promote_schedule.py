"""The 3xTF32 promotion schedule (impls/tf32/promote_schedule.cuh, run by `Tf32Wgmma::run_span` in
impls/tf32/mma.cuh), emulated on the CPU for every schedule the kernel takes (promote every 1, 2 or 4
k-blocks, from one or two accumulator sets) and every k-block count from 1 to 40 plus those of the
DeepSeek-V3 and edge K values, tails of spans and chunks included.

The emulation runs the consumer's operations in program order with WGMMA's asynchronous semantics: an
issued k-block is one commit group that writes its accumulator set until a `wgmma.wait_group N` retires
it (all but the newest N groups). It checks that every k-block is summed into the FP32 total exactly
once and in order, in chunks of at most `promote_every` k-blocks that never span a set's overwrite; that
no set is read while a WGMMA in flight writes it, nor overwritten before it was promoted; that every
stage is freed exactly once and only after its WGMMAs retired; that spans end with nothing in flight;
and that with two sets every promotion but a span's last runs while the next chunk's WGMMAs do. A compile
of the header's constexpr functions against this file's mirror ties the emulation to the kernel."""

from __future__ import annotations

import pytest

from deepgemm.heuristics.families.tf32 import TF32X3

from ..include.harness import assert_layout_mirror

NO_SET = 0xFFFFFFFF
SCHEDULES = TF32X3.promotions
DSV3_K = (7168, 1536, 512, 16384, 2048)
EDGE_K = (1, 7, 17, 65, 129, 1000, 4097)
# A 3xTF32 tile runs 3 * ceil(K / 32) k-blocks.
K_BLOCK_COUNTS = sorted({*range(1, 41), *(3 * -(-k // 32) for k in DSV3_K + EDGE_K)})


class Schedule:
    """Mirror of `Tf32PromoteSchedule<kNumKBlocks, kPromoteEvery, kPromoteSets>`."""

    def __init__(self, num_k_blocks: int, every: int, sets: int) -> None:
        self.every, self.sets = every, sets
        self.span = every if sets == 1 else max(8, 4 * every)
        self.num_full_spans, self.tail = divmod(num_k_blocks, self.span)

    def set_of(self, i: int) -> int:
        return i // self.every % self.sets

    def starts_chunk(self, i: int) -> bool:
        return i % self.every == 0

    def promoted_before(self, i: int) -> int:
        return self.set_of(i - 1) if self.sets == 2 and i > 0 and self.starts_chunk(i) else NO_SET

    def promoted_at_end(self, i: int, length: int) -> int:
        return self.set_of(i) if i + 1 == length else NO_SET


def consumer_program(num_k_blocks: int, every: int, sets: int) -> list[tuple]:
    """`Tf32Wgmma::mma_k_blocks` (its `run_span`s), as operations in program order: ("issue",
    k_block, set, overwrite), ("wait", groups left), ("release", k_block whose stage), ("promote", set)."""
    schedule = Schedule(num_k_blocks, every, sets)
    ops: list[tuple] = []

    def run_span(first: int, length: int) -> None:
        for i in range(length):
            ops.append(("issue", first + i, schedule.set_of(i), schedule.starts_chunk(i)))
            if i > 0:
                ops.extend([("wait", 1), ("release", first + i - 1)])
            if sets == 2 and schedule.promoted_before(i) != NO_SET:
                ops.append(("promote", schedule.promoted_before(i)))
            if schedule.promoted_at_end(i, length) != NO_SET:
                ops.extend([("wait", 0), ("release", first + i),
                            ("promote", schedule.promoted_at_end(i, length))])

    for span in range(schedule.num_full_spans):
        run_span(span * schedule.span, schedule.span)
    if schedule.tail:
        run_span(schedule.num_full_spans * schedule.span, schedule.tail)
    return ops


def emulate(num_k_blocks: int, every: int, sets: int) -> dict:
    """Runs the program with WGMMA's semantics, asserting every rule on the way; returns what it saw."""
    in_flight: list[tuple[int, int]] = []  # (k_block, set) of the groups not yet retired, oldest first
    retired: set[int] = set()
    contents: list[list[int]] = [[] for _ in range(sets)]  # k-blocks summed into each set, not promoted
    total: list[int] = []
    chunks: list[list[int]] = []
    released: list[int] = []
    hidden_promotions = exposed_promotions = 0
    for op in consumer_program(num_k_blocks, every, sets):
        kind = op[0]
        if kind == "issue":
            _, k_block, s, overwrite = op
            if overwrite:
                assert not contents[s], f"k-block {k_block} overwrites set {s} before it was promoted"
                contents[s] = [k_block]
            else:
                assert contents[s], f"k-block {k_block} adds to set {s}, which holds nothing"
                contents[s].append(k_block)
            in_flight.append((k_block, s))
        elif kind == "wait":
            for k_block, _ in in_flight[: max(len(in_flight) - op[1], 0)]:
                retired.add(k_block)
            in_flight = in_flight[max(len(in_flight) - op[1], 0):]
        elif kind == "release":
            assert op[1] in retired, f"the stage of k-block {op[1]} is freed while its WGMMAs may run"
            assert op[1] not in released, f"the stage of k-block {op[1]} is freed twice"
            released.append(op[1])
        elif kind == "promote":
            s = op[1]
            assert all(set_ != s for _, set_ in in_flight), f"set {s} is read while a WGMMA writes it"
            assert contents[s], f"set {s} is promoted with nothing in it"
            if in_flight:
                hidden_promotions += 1
            else:
                exposed_promotions += 1
            chunks.append(contents[s])
            total += contents[s]
            contents[s] = []
    assert not in_flight, "WGMMAs still in flight when the tile's K loop ends"
    assert all(not c for c in contents), "a set was never promoted"
    return {"total": total, "chunks": chunks, "released": released, "hidden": hidden_promotions,
            "exposed": exposed_promotions}


@pytest.mark.parametrize("every, sets", SCHEDULES)
@pytest.mark.parametrize("num_k_blocks", K_BLOCK_COUNTS)
def test_every_k_block_is_promoted_once_in_order(num_k_blocks: int, every: int, sets: int) -> None:
    seen = emulate(num_k_blocks, every, sets)
    assert seen["total"] == list(range(num_k_blocks))
    assert seen["released"] == list(range(num_k_blocks))
    chunks = seen["chunks"]
    assert all(1 <= len(chunk) <= every for chunk in chunks)
    assert all(chunk == list(range(chunk[0], chunk[0] + len(chunk))) for chunk in chunks)
    # Chunks are whole promotion periods, but for the last one of each span (the K loop's tail).
    span = Schedule(num_k_blocks, every, sets).span
    for chunk in chunks:
        offset = chunk[0] % span
        assert offset % every == 0
        assert len(chunk) == every or chunk[-1] + 1 in (num_k_blocks, *range(span, num_k_blocks, span))


@pytest.mark.parametrize("every, sets", SCHEDULES)
@pytest.mark.parametrize("num_k_blocks", K_BLOCK_COUNTS)
def test_two_sets_hide_every_promotion_but_a_spans_last(num_k_blocks: int, every: int, sets: int) -> None:
    seen = emulate(num_k_blocks, every, sets)
    schedule = Schedule(num_k_blocks, every, sets)
    num_spans = schedule.num_full_spans + (1 if schedule.tail else 0)
    assert seen["exposed"] == (num_spans if sets == 2 else len(seen["chunks"]))
    assert seen["hidden"] == len(seen["chunks"]) - seen["exposed"]
    if sets == 2:
        # A span promotes all its chunks but the last under the next chunk's WGMMAs.
        spans = [schedule.span] * schedule.num_full_spans + ([schedule.tail] if schedule.tail else [])
        assert seen["hidden"] == sum(-(-length // every) - 1 for length in spans)


@pytest.mark.parametrize("every, sets", SCHEDULES)
def test_spans_are_what_the_kernel_unrolls(every: int, sets: int) -> None:
    # One set: a span is one chunk; two: 4 chunks and at least 8 k-blocks.
    assert Schedule(100, every, sets).span == {1: every, 2: max(8, 4 * every)}[sets]


def test_the_kernel_header_decides_as_the_mirror(tmp_path, monkeypatch) -> None:
    """`Tf32PromoteSchedule`'s constexpr functions, compiled by NVRTC, equal this file's mirror for every
    schedule on a sample of k-block counts (full spans, tails, fewer k-blocks than a span)."""
    asserts = []
    for every, sets in SCHEDULES:
        for n in (1, 3, 5, 8, 9, 17, 48, 387):
            mirror = Schedule(n, every, sets)
            t = f"deepgemm::Tf32PromoteSchedule<{n}u, {every}u, {sets}u>"
            tag = f"n={n} every={every} sets={sets}"
            asserts.append(f'static_assert({t}::kSpanKBlocks == {mirror.span}u, "{tag}");')
            asserts.append(f'static_assert({t}::kNumFullSpans == {mirror.num_full_spans}u, "{tag}");')
            asserts.append(f'static_assert({t}::kTailKBlocks == {mirror.tail}u, "{tag}");')
            for length in {mirror.span, mirror.tail} - {0}:
                for i in range(length):
                    checks = {
                        f"set_of({i})": mirror.set_of(i),
                        f"starts_chunk({i})": "true" if mirror.starts_chunk(i) else "false",
                        f"promoted_before({i})": mirror.promoted_before(i),
                        f"promoted_at_end({i}, {length})": mirror.promoted_at_end(i, length),
                    }
                    for call, value in checks.items():
                        literal = value if isinstance(value, str) else f"{value}u"
                        asserts.append(f'static_assert({t}::{call} == {literal}, "{tag} {call}");')
    assert_layout_mirror(tmp_path, monkeypatch, "tf32_promote_schedule_probe",
                         "deepgemm/impls/tf32/promote_schedule.cuh", asserts)

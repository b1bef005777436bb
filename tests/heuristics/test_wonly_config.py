"""The weight-only kernel's config selection (`heuristics/families/wonly.py`): the shared-memory mirror
against hand-computed values, every selection fits and obeys the kernel's rules, the split-K and grid
arithmetic (emulating the kernel's block decomposition), and the decode/prefill tile choices."""

from __future__ import annotations

import pytest

from deepgemm.heuristics.families.wonly import MAX_STAGES, select_wonly_config, wonly_smem_bytes
from deepgemm.heuristics.family import MAX_SMEM_BYTES, ceil_div

NUM_SMS = 132
SHAPES = [(2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048), (8192, 8192),
          (28672, 4096), (7, 8), (1000, 1000), (4097, 4104)]
MS = (1, 7, 8, 16, 17, 32, 64, 65, 129, 1000, 4096)


def test_smem_mirror_by_hand():
    # 16 stages x (8 tokens x 128 B + 2 x 64 rows x 64 INT4 / 2) + 16 stages x 2 barriers x 8 B + 16 B.
    assert wonly_smem_bytes(8, 2, 16, 4) == 16 * (1024 + 4096) + 256 + 16
    # 5 stages x (256 x 128 B + 128 x 64 B) + 80 + 16.
    assert wonly_smem_bytes(256, 2, 5, 8) == 5 * (32768 + 8192) + 80 + 16


@pytest.mark.parametrize("bits", (8, 4))
@pytest.mark.parametrize("n, k", SHAPES)
def test_every_selection_fits_and_follows_the_kernel_rules(n, k, bits):
    num_k_blocks = ceil_div(k, 64)
    for m in MS:
        cfg = select_wonly_config(m, n, k, bits, NUM_SMS)
        assert cfg.smem_bytes <= MAX_SMEM_BYTES and 2 <= cfg.num_stages <= MAX_STAGES
        assert cfg.block_m in (8, 16, 32, 64, 128, 256) and cfg.block_m >= min(m, 64)
        assert 1 <= cfg.num_splits <= num_k_blocks
        tiles = ceil_div(m, cfg.block_m) * ceil_div(n, cfg.block_n)
        # Persistent: one CTA per SM at most, none without a unit.
        assert cfg.grid == min(tiles * cfg.num_splits, NUM_SMS)
        if cfg.num_splits > 1:
            assert ceil_div(num_k_blocks, cfg.num_splits) >= 4 or num_k_blocks < 8
            assert cfg.workspace_floats(tiles) == tiles * cfg.num_splits * cfg.block_n * cfg.block_m


@pytest.mark.parametrize("m, n, k", [(5, 2112, 7168), (1, 28672, 8192), (16, 7168, 16384), (64, 24576, 1536)])
def test_kernel_unit_walk_covers_every_tile_and_k_block_once(m, n, k):
    """The kernel's persistent walk (impls/wonly/schedule.cuh): CTA b takes units b, b + grid, ...; a
    unit's index splits into split (fastest), n-block, m-block, and a split into its K range."""
    cfg = select_wonly_config(m, n, k, 4, NUM_SMS)
    num_k_blocks, num_n_blocks = ceil_div(k, 64), ceil_div(n, cfg.block_n)
    num_units = ceil_div(m, cfg.block_m) * num_n_blocks * cfg.num_splits
    assert cfg.grid == min(num_units, NUM_SMS)
    seen, per_cta = {}, []
    for cta in range(cfg.grid):
        units = range(cta, num_units, cfg.grid)
        per_cta.append(sum((s + 1) * num_k_blocks // cfg.num_splits - s * num_k_blocks // cfg.num_splits
                           for s in (u % cfg.num_splits for u in units)))
        for unit in units:
            split, rest = unit % cfg.num_splits, unit // cfg.num_splits
            n_block, m_block = rest % num_n_blocks, rest // num_n_blocks
            begin = split * num_k_blocks // cfg.num_splits
            end = (split + 1) * num_k_blocks // cfg.num_splits
            assert end > begin
            seen.setdefault((m_block, n_block), []).extend(range(begin, end))
    assert len(seen) == ceil_div(m, cfg.block_m) * num_n_blocks
    assert all(sorted(blocks) == list(range(num_k_blocks)) for blocks in seen.values())
    # The walk balances the k-blocks: the busiest CTA has at most one unit more than the least busy.
    assert max(per_cta) - min(per_cta) <= ceil_div(num_k_blocks, cfg.num_splits)


def test_decode_cuts_few_large_tiles_into_balanced_units():
    """28672 x 8192 at M = 1: 224 tiles are 1.7 waves of 132 SMs; four K ranges per tile make 896 units,
    6.8 per SM, which the persistent grid runs without a pipeline fill per unit."""
    cfg = select_wonly_config(1, 28672, 8192, 4, NUM_SMS)
    assert (cfg.block_n, cfg.num_splits, cfg.grid) == (128, 4, NUM_SMS)


def test_masked_selection_never_splits_and_covers_the_groups():
    for expected_m in (16, 32, 48, 256):
        cfg = select_wonly_config(expected_m, 4096, 7168, 4, NUM_SMS, 8, masked=True)
        assert cfg.num_splits == 1 and cfg.grid == min(8 * ceil_div(4096, cfg.block_n), NUM_SMS)


def test_decode_fills_the_sms_and_prefill_takes_tall_tiles():
    decode = select_wonly_config(16, 4096, 7168, 4, NUM_SMS)
    assert decode.block_m == 16 and decode.grid >= 0.9 * NUM_SMS
    prefill = select_wonly_config(4096, 7168, 16384, 8, NUM_SMS)
    assert prefill.block_m == 256 and prefill.block_n == 128 and prefill.num_splits == 1


def test_records_describe_the_selected_configs():
    from deepgemm.heuristics import FAMILIES, W4A16, W8A16

    assert FAMILIES["w4a16"] is W4A16 and FAMILIES["w8a16"] is W8A16
    for bits, family in ((4, W4A16), (8, W8A16)):
        for m in MS:
            cfg = select_wonly_config(m, 7168, 2048, bits, NUM_SMS)
            assert cfg.block_n in family.block_n_candidates
            assert family.min_stages <= cfg.num_stages <= family.max_stages
            smem = family.smem_bytes(cfg.block_m, cfg.block_n, cfg.num_stages, 2048, 2, False, 1)
            assert smem == cfg.smem_bytes
            assert cfg.as_dict()["family"] == family.name


class _MmaRing:
    """impls/wonly/mainloop.cuh's WonlyMma k-loop, step for step (k_loop, steps, step): which stage each
    k-block reads, when each is freed and which WGMMA groups the frees wait for, and which fragment buffer
    each k-block is dequantised into, issued from, and kept (`keep`) after the wait that retired it."""

    def __init__(self, num_stages: int, depth: int) -> None:
        self.num_stages, self.depth = num_stages, depth
        self.stage = 0
        self.filled: list[int] = []    # stage of each k-block consumed, in order
        self.freed: list[int] = []     # stages freed, in order
        self.groups_issued = 0
        self.retired = 0               # groups known retired (by the waits so far)
        self.log: list[tuple[int, int]] = []  # (stage freed, groups that must have retired)
        self.buffer_group: dict[int, int] = {}  # buffer -> the group that last read it
        self.kept: list[tuple[int, int]] = []   # (buffer, its group) read again after a wait

    def stage_back(self, back: int) -> int:
        return self.stage - back if self.stage >= back else self.stage + self.num_stages - back

    def advance(self) -> None:
        self.stage = (self.stage + 1) % self.num_stages

    def wait(self, pending: int) -> None:  # wgmma.wait_group: all but the newest `pending` retire
        self.retired = max(self.retired, self.groups_issued - pending)

    def free(self, stage: int) -> None:
        held = len(self.filled) - len(self.freed)
        assert held <= self.depth < self.num_stages
        self.freed.append(stage)
        self.log.append((stage, self.retired))

    def dequant(self, buffer: int) -> None:
        self.filled.append(self.stage)
        # The conversion writes the buffer: the group that read it last must have retired, and `keep`
        # must have read it after that (what holds its registers until then).
        if buffer in self.buffer_group:
            assert self.buffer_group[buffer] <= self.retired
            assert self.kept[-1] == (buffer, self.buffer_group[buffer])

    def issue(self, buffer: int) -> None:
        self.groups_issued += 1
        self.buffer_group[buffer] = self.groups_issued

    def step(self, b: int, k_block: int, k_begin: int, k_end: int) -> bool:
        self.issue(b)
        if k_block + 1 == k_end:
            return False
        self.wait(self.depth - 1)
        nxt = (b + 1) % self.depth
        if nxt in self.buffer_group:
            self.kept.append((nxt, self.buffer_group[nxt]))
        if k_block >= k_begin + self.depth - 1:
            self.free(self.stage_back(self.depth - 1))
        self.advance()
        self.dequant(nxt)
        return True

    def k_loop(self, k_begin: int, k_end: int) -> None:
        self.buffer_group.clear()  # a new k_loop's buffers (the last one drained with a wait for all)
        self.dequant(0)
        k_block, running = k_begin, True
        while running:
            for b in range(self.depth):
                running = self.step(b, k_block, k_begin, k_end)
                if not running:
                    break
                k_block += 1
        self.wait(0)
        for back in range(min(k_end - k_begin, self.depth)):
            self.free(self.stage_back(back))
        self.advance()


@pytest.mark.parametrize("num_stages, depth", [(5, 4), (32, 4), (14, 4), (3, 2), (9, 2)])
def test_mainloop_frees_each_stage_once_after_its_wgmmas_retired(num_stages, depth):
    """The ring stays in step with the producer (which fills stages 0, 1, ... in turn) over units of any
    length, every consumed stage is freed exactly once, and only once the WGMMA group that read it has
    retired; a fragment buffer is rewritten only after the group that read it retired and `keep` read it
    (the registers' lifetime the assembler sees; tests/include/test_wonly_kernel_compile.py checks the
    SASS)."""
    ring = _MmaRing(num_stages, depth)
    lengths = [1, 2, 3, 4, 5, 7, 18, 1, 1, 32, 6, 8, 9]
    for length in lengths:
        before = len(ring.filled)
        ring.k_loop(100, 100 + length)
        consumed = ring.filled[before:]
        assert consumed == [(before + i) % num_stages for i in range(length)]
        assert ring.retired == ring.groups_issued
    assert ring.freed and sorted(ring.freed) == sorted(ring.filled)
    assert len(ring.kept) == sum(max(0, length - depth) for length in lengths)
    # k-block j (0-based over the whole run) is group j + 1: freeing its stage needs groups <= j + 1 retired.
    frees_by_stage: dict[int, list[int]] = {}
    for stage, retired in ring.log:
        frees_by_stage.setdefault(stage, []).append(retired)
    uses_by_stage: dict[int, list[int]] = {}
    for j, stage in enumerate(ring.filled):
        uses_by_stage.setdefault(stage, []).append(j + 1)
    for stage, uses in uses_by_stage.items():
        assert len(frees_by_stage[stage]) == len(uses)
        assert all(retired >= group for retired, group in zip(frees_by_stage[stage], uses, strict=True))


@pytest.mark.parametrize("depth, lead", ((4, 4), (4, 2), (2, 2)))
@pytest.mark.parametrize("group_k_blocks", (1, 2, 3, 4, 7, 112))
def test_scale_slots_hand_each_k_block_its_groups_values(group_k_blocks, depth, lead):
    """impls/wonly/mainloop.cuh's GroupParams (kLead slots, kLead dividing the k-loop's depth: a slot per
    step of a pass, or per two) and WonlyMma::dequant's use of it, over K ranges that start and end
    mid-group, across units (the next unit's first group read while the unit before runs) and repeated
    m-blocks (primed again):
    every k-block dequantises with its own group's values; a slot is read only by the steps it belongs
    to (slot = ((k_block - k_begin) mod depth) mod lead, what the unrolled steps index statically) and
    only after the read that filled it, which is never overwritten before that use; a read goes out
    `lead` k-blocks before its use, or when its K range starts; no read targets a k-block past the
    range."""
    num_k_blocks = 112
    num_groups = ceil_div(num_k_blocks, group_k_blocks)
    one_group = num_groups == 1
    ranges = [(0, 112), (5, 33), (33, 61), (61, 112), (3, 4), (111, 112), (0, 1), (6, 9)]
    preloaded = None  # (group) read during the previous unit, as the kernel's ahead_params
    for index, (k_begin, k_end) in enumerate(ranges):
        for m_block in range(2):
            # prime: `first` from the preloaded read on the unit's first m-block, else fetched; the
            # groups starting at k_begin + 1 .. k_begin + depth - 1 (before k_end) into their slots.
            first = preloaded if m_block == 0 and preloaded is not None else k_begin // group_k_blocks
            slots: dict[int, tuple[int, int]] = {}  # slot -> (group, k-block whose step read it)
            if not one_group:
                for s in range(1, lead):
                    if (k_begin + s) % group_k_blocks == 0 and k_begin + s < k_end:
                        slots[s] = ((k_begin + s) // group_k_blocks, k_begin)
            if m_block == 0:  # the next unit's first group is read right after priming
                preloaded = ranges[index + 1][0] // group_k_blocks if index + 1 < len(ranges) else None
            current = None
            for k_block in range(k_begin, k_end):
                s = ((k_block - k_begin) % depth) % lead
                if k_block == k_begin:
                    current = first
                elif not one_group and k_block % group_k_blocks == 0:
                    group, issued = slots.pop(s)  # a KeyError: nothing was read for this step
                    assert k_block - issued >= lead or issued == k_begin
                    current = group
                if not one_group:
                    ahead = k_block + lead
                    if ahead % group_k_blocks == 0 and ahead < k_end:
                        assert s not in slots  # the slot's previous read was used
                        slots[s] = (ahead // group_k_blocks, k_block)
                assert current == k_block // group_k_blocks
            assert not slots  # every read was used

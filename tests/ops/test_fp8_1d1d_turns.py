"""The 1D1D kernel's two consumer warpgroups taking turns to issue WGMMAs (impls/fp8_1d1d/mma_promote.cuh),
emulated on the CPU with the hardware barriers' semantics: over any tile stream (tiles of no k-blocks
included) and any interleaving of the two warpgroups, nothing deadlocks, the WGMMA batches are issued
warpgroup 0, 1, 0, 1, ..., and every arrival on a turn barrier meets exactly one wait, so no barrier is
left with arrivals when the kernel ends.

A hardware barrier (`bar.arrive` / `bar.sync` with a thread count) completes once that many threads
arrived; `bar.sync` blocks until then, `bar.arrive` does not. Here a warpgroup's arrival counts 1 and a
turn barrier expects 2 (both warpgroups' 128 threads of 256)."""

import random

import pytest

TURN_BARRIER = (3, 4)  # Layout::kTurnBarrier + warpgroup
EXPECTED = 2


def warpgroup_program(g: int, tiles: list[int], num_waves: int) -> list[tuple]:
    """The barrier operations and WGMMA batches warpgroup `g` runs, in program order: start_turns, per
    tile and k-block and wave a turn (sync on its own barrier, issue, arrive on the other's), end_turns."""
    ops = []
    if g == 1:
        ops.append(("arrive", TURN_BARRIER[0]))
    for tile, num_k_blocks in enumerate(tiles):
        for k_block in range(num_k_blocks):
            for wave in range(num_waves):
                ops.append(("sync", TURN_BARRIER[g]))
                ops.append(("issue", (tile, k_block, wave)))
                ops.append(("arrive", TURN_BARRIER[g ^ 1]))
    if g == 0:
        ops.append(("sync", TURN_BARRIER[0]))
    return ops


def run(tiles: list[int], num_waves: int, rng: random.Random) -> list[tuple[int, tuple]]:
    """Both warpgroups' programs for `tiles` run by `run_programs`."""
    return run_programs([warpgroup_program(g, tiles, num_waves) for g in (0, 1)], rng)


def run_programs(programs: list[list[tuple]], rng: random.Random) -> list[tuple[int, tuple]]:
    """Runs the two programs, a random ready warpgroup one step at a time; returns the issued batches."""
    pc = [0, 0]
    arrived = {b: 0 for b in TURN_BARRIER}
    # Each barrier's syncing warpgroup, if one is blocked on it, and whether each warpgroup is blocked.
    waiting: dict[int, int] = {}
    blocked = [False, False]
    issued = []

    def arrive(barrier: int) -> None:
        arrived[barrier] += 1
        assert arrived[barrier] <= EXPECTED
        if arrived[barrier] == EXPECTED:
            # A completion must release a waiting warpgroup: with none, the barrier completed on two
            # arrivals and the next sync would wait for a turn that was already given.
            assert barrier in waiting, f"barrier {barrier} completed with no warpgroup waiting on it"
            blocked[waiting.pop(barrier)] = False
            arrived[barrier] = 0

    while True:
        ready = [g for g in (0, 1) if not blocked[g] and pc[g] < len(programs[g])]
        if not ready:
            break
        g = rng.choice(ready)
        op, arg = programs[g][pc[g]]
        pc[g] += 1
        if op == "issue":
            issued.append((g, arg))
        elif op == "arrive":
            arrive(arg)
        else:
            assert arg not in waiting
            waiting[arg] = g
            blocked[g] = True
            arrive(arg)
    assert pc == [len(p) for p in programs], f"deadlock: warpgroups stopped at {pc}, blocked {blocked}"
    assert arrived == {b: 0 for b in TURN_BARRIER} and not waiting
    return issued


@pytest.mark.parametrize("num_waves", [1, 2])
@pytest.mark.parametrize("tiles", [[], [0], [1], [3], [0, 0], [2, 0, 5], [0, 4, 0], [64] * 3, [1, 1, 1, 1]])
def test_turns_alternate_and_balance(tiles, num_waves):
    rng = random.Random(len(tiles) * 131 + sum(tiles) * 7 + num_waves)
    batches = [(t, k, w) for t, n in enumerate(tiles) for k in range(n) for w in range(num_waves)]
    for _ in range(50):
        issued = run(tiles, num_waves, rng)
        # Warpgroup 0 then 1 for every batch, in program order.
        assert issued == [(g, batch) for batch in batches for g in (0, 1)]


def test_random_tile_streams():
    rng = random.Random(2026)
    for _ in range(300):
        tiles = [rng.choice([0, 0, 1, 2, 7]) for _ in range(rng.randrange(0, 6))]
        num_waves = rng.choice([1, 2])
        issued = run(tiles, num_waves, rng)
        assert [g for g, _ in issued] == [0, 1] * (sum(tiles) * num_waves)


def test_the_emulation_catches_a_broken_protocol():
    """Without warpgroup 1's first arrival nothing is issued; with a second one, a turn barrier completes
    on arrivals alone."""
    programs = [warpgroup_program(g, [1], 1) for g in (0, 1)]
    assert programs[1][0] == ("arrive", TURN_BARRIER[0])
    with pytest.raises(AssertionError, match="deadlock"):
        run_programs([programs[0], programs[1][1:]], random.Random(0))
    with pytest.raises(AssertionError, match="no warpgroup waiting"):
        run_programs([programs[0][1:], [programs[1][0], *programs[1]]], random.Random(0))

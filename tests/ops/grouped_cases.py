"""The grouped GEMMs' GPU test cases (FP8 and 16-bit): random expert sizes around an expected count,
some experts empty, built into the benchmark's grouped inputs on the GPU."""

import random

import torch

from deepgemm.quant import align
from deepgemm.testing import GroupedInputs, make_grouped_inputs


def expert_sizes(num_groups: int, expected: int, seed: int, max_m: int | None = None) -> list[int]:
    """0.7-1.3x ``expected`` rows each; with 4+ experts every fifth (from the second) is empty, and
    with ``max_m`` (masked) the last one is full."""
    rng = random.Random(seed)
    sizes = [rng.randint(expected * 7 // 10, expected * 13 // 10) for _ in range(num_groups)]
    if num_groups >= 4:
        for group in range(1, num_groups, 5):
            sizes[group] = 0
        if max_m is not None:
            sizes[-1] = max_m
    return sizes


# Experts whose rows start and end inside 256-row tiles and 64-row store boxes (1 to 640 rows, two
# empty), for tests that force tile shapes: padded to 128 each, rows 256-511, 512-767 and 1280-1535
# are 256-row blocks holding two experts.
EXPERT_SIZES_ACROSS_TILES = (129, 0, 1, 255, 257, 0, 383, 127, 640)


def grouped_inputs(layout: str, num_groups: int, expected: int, n: int, k: int,
                   operand_dtype: torch.dtype = torch.float8_e4m3fn) -> GroupedInputs:
    """Inputs of one grouped case on the GPU, seeded by its sizes; masked cases get max_m = 1.3x
    ``expected`` (aligned to 128)."""
    seed = num_groups * 1_000_003 + n * 7919 + k
    max_m = align(expected * 13 // 10, 128) if layout == "masked" else None
    sizes = expert_sizes(num_groups, expected, seed, max_m)
    return make_grouped_inputs(layout, num_groups, sizes, n, k, max_m, torch.device("cuda"), seed,
                               expected_m=expected, operand_dtype=operand_dtype)


def valid_rows_mask(inputs: GroupedInputs, masked_m: torch.Tensor | None = None) -> torch.Tensor:
    """Which rows of d a grouped op writes: ``[M_sum]`` (contiguous) or ``[G, max_m]`` (masked, by
    ``masked_m`` when given, else the inputs' own counts)."""
    if inputs.layout == "contiguous":
        return inputs.m_indices >= 0
    counts = inputs.masked_m if masked_m is None else masked_m
    return torch.arange(inputs.a.shape[1], device="cuda")[None, :] < counts[:, None]


def captured_graph(call) -> torch.cuda.CUDAGraph:
    """``call`` run once (it compiles and loads its kernel, which capture does not allow), then
    captured in a CUDA graph."""
    call()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    return graph


def replay_row_counts(max_m: int) -> list[list[int]]:
    """``masked_m`` values for four groups to replay a captured masked call with: all empty, all
    full, mixed edges, and one random draw."""
    rng = random.Random(0)
    return [
        [0, 0, 0, 0],
        [max_m] * 4,
        [0, max_m, 17, 200],
        [1, 0, max_m - 1, 64],
        [rng.randint(0, max_m) for _ in range(4)],
    ]

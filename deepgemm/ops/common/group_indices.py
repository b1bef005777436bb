"""The index tensors of the grouped GEMMs: row masks, ``group_ends`` -> ``m_indices``, value checks.

The masks and the conversion are torch ops that never read values on the host, so on a GPU they
queue work without a sync (CUDA-graph capturable). The ``check_*`` functions do read the values on
the host: the ops run them on every CPU call, where that is free, and on a GPU only under
``DG_DEBUG_CHECK_INDICES``. They raise ``ValueError`` naming the first bad entry.
"""

import torch
import torch.nn.functional as F

# The kernels read one expert per tile of up to 128 rows from the tile's first row, so each expert's
# rows must start on a multiple of this in the contiguous layouts (every family).
M_ALIGNMENT_CONTIGUOUS = 128


def get_m_alignment_for_contiguous_layout() -> int:
    """The row alignment of each expert's segment in the contiguous grouped GEMMs
    (``m_grouped_*_gemm_nt_contiguous`` and ``_offsets``): 128."""
    return M_ALIGNMENT_CONTIGUOUS


def _align_up(values: torch.Tensor, alignment: int) -> torch.Tensor:
    return (values + alignment - 1).div(alignment, rounding_mode="floor") * alignment


def _previous_ends(ends: torch.Tensor) -> torch.Tensor:
    """``ends`` shifted right by one, 0 in front: ``group_ends[g - 1]`` with ``group_ends[-1] := 0``."""
    return F.pad(ends[:-1], (1, 0))


def _first(mask: torch.Tensor) -> int | None:
    """The flat index of the first ``True`` of ``mask``, or ``None``."""
    hits = mask.flatten().nonzero()
    return int(hits[0]) if len(hits) else None


def masked_rows(masked_m: torch.Tensor, max_m: int) -> torch.Tensor:
    """``bool [G, max_m]``: row ``r`` of group ``g`` is valid iff ``r < masked_m[g]``."""
    return torch.arange(max_m, device=masked_m.device) < masked_m[:, None]


def group_ends_to_m_indices(group_ends: torch.Tensor, m_sum: int, alignment: int) -> torch.Tensor:
    """The ``m_indices`` (``int32 [M_sum]``) that describe the same rows as ``group_ends``.

    Expert ``g`` owns rows ``[align_up(group_ends[g - 1], alignment), group_ends[g])`` (with
    ``group_ends[-1] := 0``); other rows get -1 (padding). Valid ``group_ends`` (see
    ``check_group_ends``) give a valid contiguous layout; invalid ones give some indices in
    ``[-1, G)``, never an out-of-range one.
    """
    rows = torch.arange(m_sum, device=group_ends.device)
    num_groups = len(group_ends)
    if num_groups == 0:
        return torch.full((m_sum,), -1, dtype=torch.int32, device=group_ends.device)
    ends = group_ends.long()
    starts = _align_up(_previous_ends(ends), alignment)
    # Row r can only belong to the first expert whose end lies past it; an empty expert never is that
    # first one (its end equals the previous expert's), and r may still sit in the padding before its start.
    group = torch.searchsorted(ends, rows, right=True)
    in_group = (group < num_groups) & (rows >= starts[group.clamp(max=num_groups - 1)])
    return torch.where(in_group, group, -1).to(torch.int32)


def check_m_indices(m_indices: torch.Tensor, num_groups: int, alignment: int) -> None:
    """Check the contiguous layout: every value is -1 or an expert in ``[0, G)``, and in every aligned
    ``alignment``-row block the expert rows all belong to one expert and come before the padding rows."""
    indices = m_indices.long()
    row = _first((indices < -1) | (indices >= num_groups))
    if row is not None:
        raise ValueError(
            f"m_indices[{row}] must be -1 (padding) or an expert in [0, G={num_groups}), "
            f"found {int(indices[row])}"
        )
    m_sum = len(indices)
    blocks = F.pad(indices, (0, -m_sum % alignment), value=-1).view(-1, alignment)
    valid = blocks >= 0
    follows_padding = torch.zeros_like(valid)
    follows_padding[:, 1:] = valid[:, 1:] & ~valid[:, :-1]
    # A block that starts with padding has its bad rows flagged by follows_padding as well.
    other_expert = valid & (blocks != blocks[:, :1])
    row = _first(follows_padding | other_expert)
    if row is None:
        return
    block, start = row // alignment, row // alignment * alignment
    where = f"its {alignment}-row block {block} (rows {start}..{min(start + alignment, m_sum) - 1})"
    if follows_padding.flatten()[row]:
        raise ValueError(
            f"m_indices[{row}] = {int(indices[row])} follows a padding row (-1) in {where}: in each "
            "aligned block an expert's rows come first, its padding rows after them"
        )
    raise ValueError(
        f"m_indices[{row}] = {int(indices[row])} but {where} starts with expert {int(indices[start])}: "
        f"each aligned block holds rows of one expert (pad every expert to a multiple of {alignment} rows)"
    )


def check_group_ends(group_ends: torch.Tensor, m_sum: int, alignment: int) -> None:
    """Check each ``group_ends[g]`` equals ``group_ends[g - 1]`` (an empty expert) or is at least
    ``align_up(group_ends[g - 1], alignment)`` (with ``group_ends[-1] := 0``), and is at most ``M_sum``."""
    ends = group_ends.long()
    previous = _previous_ends(ends)
    starts = _align_up(previous, alignment)
    group = _first((ends != previous) & (ends < starts))
    if group is not None:
        before = f"group_ends[{group - 1}] = {int(previous[group])}" if group else "0"
        raise ValueError(
            f"group_ends[{group}] must equal {before} (an empty expert) or be >= {int(starts[group])} "
            f"(that rounded up to a multiple of {alignment}), found {int(ends[group])}"
        )
    group = _first(ends > m_sum)
    if group is not None:
        raise ValueError(f"group_ends[{group}] must be <= M_sum = {m_sum}, found {int(ends[group])}")


def check_masked_m(masked_m: torch.Tensor, max_m: int) -> None:
    """Check every ``masked_m[g]`` is in ``[0, max_m]``."""
    group = _first((masked_m < 0) | (masked_m > max_m))
    if group is not None:
        raise ValueError(f"masked_m[{group}] must be in [0, max_m={max_m}], found {int(masked_m[group])}")


def check_index_values_now(cuda_index: int | None) -> bool:
    """Whether to check the index values on the host: always for CPU tensors (reading them is free),
    on a GPU only under ``DG_DEBUG_CHECK_INDICES`` (it costs a sync)."""
    if cuda_index is None:
        return True
    from ...jit.knobs import debug_check_indices  # here: CPU-only use never loads deepgemm.jit

    return debug_check_indices()


def settled_contiguous(d: torch.Tensor, m_indices: torch.Tensor, num_groups: int, n: int, k: int,
                       cuda_index: int | None) -> torch.Tensor | None:
    """What a contiguous grouped op (per-row ``m_indices``) returns with no GEMM to run: ``d`` when a size
    is 0, ``d`` with its expert rows zeroed when ``K == 0``; else ``None``. Checks the index values first
    where ``check_index_values_now`` says so."""
    if len(m_indices) == 0 or n == 0 or num_groups == 0:
        return d
    if check_index_values_now(cuda_index):
        check_m_indices(m_indices, num_groups, M_ALIGNMENT_CONTIGUOUS)
    return d.masked_fill_((m_indices >= 0)[:, None], 0) if k == 0 else None


def settled_masked(d: torch.Tensor, masked_m: torch.Tensor, max_m: int, n: int, k: int,
                   cuda_index: int | None) -> torch.Tensor | None:
    """``settled_contiguous`` for a masked grouped op: ``d`` when a size is 0, ``d`` with its valid rows
    zeroed when ``K == 0``; else ``None``."""
    if len(masked_m) == 0 or max_m == 0 or n == 0:
        return d
    if check_index_values_now(cuda_index):
        check_masked_m(masked_m, max_m)
    return d.masked_fill_(masked_rows(masked_m, max_m)[..., None], 0) if k == 0 else None


def offsets_m_indices(group_ends: torch.Tensor, m_sum: int, k: int,
                      cuda_index: int | None) -> torch.Tensor | None:
    """For a contiguous grouped op given ``group_ends``, once no size is 0: checks the values where
    ``check_index_values_now`` says so; returns the per-row ``m_indices`` that the CPU path and an empty K
    sum (``K == 0``) run on, or ``None`` where the kernel reads ``group_ends`` itself."""
    if check_index_values_now(cuda_index):
        check_group_ends(group_ends, m_sum, M_ALIGNMENT_CONTIGUOUS)
    if k == 0 or cuda_index is None:
        return group_ends_to_m_indices(group_ends, m_sum, M_ALIGNMENT_CONTIGUOUS)
    return None


def write_rows(d: torch.Tensor, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Copy the ``rows`` (a bool mask over ``d``'s leading dims) of the FP32 ``out`` into ``d``, leaving
    the other rows of ``d`` as they are, as the kernels do; returns ``d``."""
    d[rows] = out[rows].to(d.dtype)
    return d

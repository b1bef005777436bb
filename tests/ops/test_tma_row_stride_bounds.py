"""``tma_row_stride_bounds``, which the cached call paths test row strides against, keeps exactly the rules
of ``tma_rows_ok``: over row counts of one and more, every out-of-16-bytes size, and strides around each
bound (below a row, a row, past it, at and past the 2^40-byte TMA limit, zero)."""

from __future__ import annotations

import itertools

import pytest

from deepgemm.ops.common.validation import MAX_TMA_STRIDE_BYTES, tma_row_stride_bounds, tma_rows_ok


@pytest.mark.parametrize("per_16", [1, 2, 4, 8, 16])
def test_bounds_accept_what_tma_rows_ok_accepts(per_16: int) -> None:
    limit = (MAX_TMA_STRIDE_BYTES >> 4) * per_16
    for rows, cols in itertools.product([1, 2, 65], [1, 16, 48, 7168]):
        lo, hi = tma_row_stride_bounds(rows, cols, per_16)
        strides = {0, 1, cols - 16, cols - 1, cols, cols + 1, cols + 16, 2 * cols, limit - per_16, limit,
                   limit + per_16, 2**62}
        for row_stride, col_stride in itertools.product(sorted(strides), [0, 1, 2]):
            expected = tma_rows_ok((row_stride, col_stride), rows, cols, per_16)
            inline = col_stride == 1 and row_stride % per_16 == 0 and lo <= row_stride < hi
            assert inline == expected, (rows, cols, row_stride, col_stride)

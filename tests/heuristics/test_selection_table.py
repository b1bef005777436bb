"""Every kernel family's selected config over a broad grid of shapes equals a recorded table: clean-ups of
the heuristics layer move no config.

The grid: M from 1 to 16384 (odd sizes and the tile edges around 64, 128 and 256 included), every (N, K)
of the benchmark suites, and each layout, output size and operand storage every family's ops select for
(the masked layout's M is per group; the contiguous layout's the rows of all groups), on the H100's 132
SMs and a smaller count for part of it. The table was recorded before the clean-up that added this test
(`python tests/heuristics/test_selection_table.py --write` records it again; only do that for a change
meant to move configs).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from deepgemm.heuristics import (
    BF16,
    FP8_1D1D,
    FP8_1D2D,
    INT8,
    TF32,
    TF32X3,
    W4A16,
    W8A16,
    GemmShape,
    select_config,
)

# A header naming the fields of each config type, then one JSON array per row: family, shape fields,
# num_sms, the config's field values. Gzipped: it is large.
TABLE = Path(__file__).parent / "data" / "selection_table.jsonl.gz"

MS = (1, 2, 7, 16, 31, 64, 65, 127, 128, 129, 256, 257, 1000, 1024, 2047, 3001, 4096, 6144, 12345, 16384)
# Fewer M for the other kinds of call and the second SM count (each selection costs milliseconds).
FEW_MS = (1, 65, 257, 1000, 4096, 16384)
# Every (N, K) the benchmark suites run (bench/suites.py, bench/decode_shapes.py).
NKS = (
    (64, 7168), (576, 7168), (768, 4096), (1024, 1024), (1280, 8192), (1536, 7168), (2048, 2048),
    (2112, 4096), (2112, 7168), (2112, 8192), (3072, 1536), (4096, 512), (4096, 1792), (4096, 4096),
    (4096, 6144), (4096, 7168), (4096, 8192), (4096, 14336), (4608, 7168), (5120, 6400), (5120, 8192),
    (6144, 3072), (6144, 4096), (7168, 2048), (7168, 2304), (7168, 4096), (7168, 7168), (7168, 8192),
    (7168, 16384), (7392, 8192), (8192, 1024), (8192, 2048), (8192, 3584), (8192, 3696), (8192, 8192),
    (8192, 14336), (8192, 28672), (10240, 5120), (12800, 5120), (14336, 8192), (18432, 7168),
    (18432, 18432), (24576, 1536), (24576, 4096), (24576, 8192), (28672, 4096), (28672, 8192),
    (32768, 512), (32768, 4096), (32768, 8192),
)
NUM_SMS = (132, 114)
NUM_GROUPS = 8
# (family, shape fields) of each kind of call the families' ops select for; each family's first is its
# main one, on every M of MS.
VARIANTS = (
    (FP8_1D2D, {}),
    (FP8_1D2D, {"out_bytes": 4}),
    (FP8_1D2D, {"layout": "contiguous", "num_groups": NUM_GROUPS}),
    (FP8_1D2D, {"layout": "masked", "num_groups": NUM_GROUPS}),
    (BF16, {}),
    (BF16, {"out_bytes": 4}),
    (BF16, {"b_mn_major": True}),
    (BF16, {"layout": "contiguous", "num_groups": NUM_GROUPS}),
    (BF16, {"layout": "masked", "num_groups": NUM_GROUPS}),
    (FP8_1D1D, {"out_bytes": 4}),
    (FP8_1D1D, {}),
    (FP8_1D1D, {"out_bytes": 4, "layout": "masked", "num_groups": NUM_GROUPS}),
    (INT8, {}),
    (INT8, {"out_bytes": 4}),
    (INT8, {"layout": "contiguous", "num_groups": NUM_GROUPS}),
    (INT8, {"layout": "masked", "num_groups": NUM_GROUPS}),
    (TF32, {"out_bytes": 4}),
    (TF32X3, {"out_bytes": 4}),
)
# The weight-only families, over the dense and masked layouts.
WEIGHT_ONLY = (W4A16, W8A16)


def _grid():
    """(family name, shape fields, num_sms) of every row, in table order."""
    main = set()
    for family, fields in VARIANTS:
        first = family.name not in main
        main.add(family.name)
        for num_sms in NUM_SMS:
            if not first and num_sms != NUM_SMS[0]:
                continue
            ms = MS if first and num_sms == NUM_SMS[0] else FEW_MS
            for m in ms:
                for n, k in NKS:
                    yield family.name, {"m": m, "n": n, "k": k, **fields}, num_sms
    for family in WEIGHT_ONLY:
        for layout in ("dense", "masked"):
            for num_sms in NUM_SMS:
                for m in MS:
                    for n, k in NKS:
                        groups = {"layout": layout, "num_groups": NUM_GROUPS} if layout == "masked" else {}
                        yield family.name, {"m": m, "n": n, "k": k, **groups}, num_sms


_FAMILIES = {family.name: family for family in (*(family for family, _ in VARIANTS), *WEIGHT_ONLY)}


def _selected(family: str, fields: dict, num_sms: int) -> list:
    """The selected config's field names and values, the kernel family by name."""
    cfg = select_config(GemmShape(**fields, family=_FAMILIES[family]), num_sms)
    return [[name, getattr(value, "name", value)] for name, value in vars(cfg).items()]


def _rows() -> list[str]:
    """The table's lines: a header naming each config type's fields, then one compact row per shape."""
    rows, field_names = [], {}
    for family, fields, num_sms in _grid():
        selected = _selected(family, fields, num_sms)
        kind = "weight_only" if _FAMILIES[family] in WEIGHT_ONLY else "gemm"
        field_names.setdefault(kind, [name for name, _ in selected])
        values = [value for _, value in selected]
        rows.append(json.dumps([family, fields, num_sms, values], separators=(",", ":")))
    return [json.dumps(field_names), *rows]


def test_selections_match_the_recorded_table():
    recorded = gzip.decompress(TABLE.read_bytes()).decode().splitlines()
    got = _rows()
    assert len(got) == len(recorded) > 15000
    moved = [f"{old} -> {new}" for old, new in zip(recorded, got, strict=True) if old != new]
    assert not moved, f"{len(moved)} selections moved, e.g. " + "; ".join(moved[:3])


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/heuristics/test_selection_table.py --write")
    TABLE.write_bytes(gzip.compress(("\n".join(_rows()) + "\n").encode(), mtime=0))

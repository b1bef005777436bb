"""Records the config the heuristic selects for every shape the heuristic tests cover, as JSON lines: a header
naming the config fields, then one selection per line.

    python tools/freeze_selections.py tests/heuristics/data/frozen_selections.jsonl

The table guards restructurings of the heuristics: `tests/heuristics/test_frozen_selections.py` asserts
that `select_config` still picks exactly these configs. Rewrite it only for a change that means to move
a selection, and say which ones moved in the commit.
"""

import itertools
import json
import sys
from dataclasses import asdict

from deepgemm.heuristics import BF16, FP8_1D2D, GemmShape, select_config

DSV3_NK = ((2112, 7168), (24576, 1536), (32768, 512), (7168, 16384), (4096, 7168), (7168, 2048))
EDGE_MNK = tuple(itertools.product((1, 7, 63, 65, 127, 129, 1000, 4097), (8, 120, 1000, 7176),
                                   (16, 128, 208, 7168, 7296)))
SM_COUNTS = (132, 114, 78, 1, 2, 131)
MOE_NK = ((4096, 7168), (7168, 2048), (2112, 7168), (24576, 1536))
# The fields of GemmConfig that say what runs, in the order each table row lists them.
CONFIG_FIELDS = ["block_m", "block_n", "num_stages", "num_tma_multicast", "multicast_on_a", "swizzle_d_bytes",
                 "num_sms", "out_bytes", "grouped", "num_d_chunks", "load_batch", "split_k"]


def shapes():
    """(shape arguments, SM counts) pairs: the dense suites of both operand families at both output
    sizes on every SM count, N-major 16-bit B, and the grouped layouts on the full GPU."""
    for operands in ("fp8", "16bit"):
        out_sizes = (2, 4)
        dense = [(m, n, k) for m in (64, 128, 4096) for n, k in DSV3_NK] + list(EDGE_MNK)
        for (m, n, k), out in itertools.product(dense, out_sizes):
            yield dict(m=m, n=n, k=k, out_bytes=out, operands=operands), SM_COUNTS
            if operands == "16bit" and n % 64 == 0:
                yield dict(m=m, n=n, k=k, out_bytes=out, operands=operands, b_mn_major=True), (132, 78)
        for (n, k), g in itertools.product(MOE_NK, (1, 2, 4, 8)):
            for m in (1, 64, 256, 512, 1024, 4096, 8192):
                for layout, rows in (("contiguous", g * m), ("masked", m)):
                    yield dict(m=rows, n=n, k=k, out_bytes=2, num_groups=g, layout=layout,
                               operands=operands), (132, 78)


# Families by the operands the table names them by (it was recorded before families had names).
FAMILIES = {"fp8": FP8_1D2D, "16bit": BF16}


def make_shape(args: dict) -> GemmShape:
    args = dict(args)
    family = FAMILIES[args.pop("operands")]
    return GemmShape(**args, family=family)


def main(path: str) -> None:
    lines = []
    for args, sm_counts in shapes():
        for num_sms in sm_counts:
            cfg = asdict(select_config(make_shape(args), num_sms))
            row = {"shape": args, "num_sms": num_sms, "config": [cfg[name] for name in CONFIG_FIELDS]}
            lines.append(json.dumps(row, sort_keys=True, separators=(",", ":")))
    with open(path, "w") as f:
        f.write(json.dumps({"config_fields": CONFIG_FIELDS}) + "\n")
        f.write("\n".join(lines) + "\n")
    print(f"{len(lines)} selections written to {path}")


if __name__ == "__main__":
    main(sys.argv[1])

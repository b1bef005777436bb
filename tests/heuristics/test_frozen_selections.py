"""The heuristic's selections on every shape the heuristic tests cover equal a table recorded before the
kernel-family restructuring (`tools/freeze_selections.py`): restructuring moves no config."""

import json
from dataclasses import asdict
from pathlib import Path

from deepgemm.heuristics import BF16, FP8_1D2D, GemmShape, select_config

TABLE = Path(__file__).parent / "data" / "frozen_selections.jsonl"
# The table names each kernel family by its operands, as recorded before families had names.
FAMILIES = {"fp8": FP8_1D2D, "16bit": BF16}


def test_selections_match_the_frozen_table():
    header, *rows = TABLE.read_text().splitlines()
    fields = json.loads(header)["config_fields"]
    mismatches = []
    for line in rows:
        row = json.loads(line)
        args = dict(row["shape"])
        family = FAMILIES[args.pop("operands")]
        shape = GemmShape(**args, family=family)
        chosen = asdict(select_config(shape, row["num_sms"]))
        got = [chosen[name] for name in fields]
        if got != row["config"]:
            mismatches.append(f"{row['shape']} on {row['num_sms']} SMs: {got} != {row['config']}")
    assert len(rows) > 5000
    assert not mismatches, f"{len(mismatches)} selections moved, e.g. " + "; ".join(mismatches[:5])

"""The GPU-only tools, started with no visible GPU, say so in one line on stderr and exit with status 2."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Each tool with the smallest command line that gets it past argument parsing.
TOOLS = [
    ("run_fp8_once.py", ["64", "128", "128"]),
    ("sanitize.py", []),
    ("sweep.py", ["--shapes", "64,128,128", "--top", "1"]),
]


@pytest.mark.parametrize("tool, args", TOOLS)
def test_tool_without_gpu_exits_2_with_one_line(tool: str, args: list[str], tmp_path: Path) -> None:
    # An empty CUDA_VISIBLE_DEVICES hides any GPU, so this holds on a GPU machine as well.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{tool}: needs a Hopper (sm_90) GPU; torch sees none"), lines[0]
    assert result.stdout == ""


def test_help_needs_no_gpu() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "tools" / "run_fp8_once.py"), "--help"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout

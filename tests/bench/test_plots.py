"""The visual report (deepgemm.bench.plots, --report, --report-from) from the committed H100 run."""

import base64
import json
import re
import sys
from pathlib import Path

import pytest

from deepgemm.bench import cli, plots

RUN_DIR = Path(__file__).resolve().parents[2] / "docs" / "bench" / "2026-12-07-h100"
H100_RUN = sorted(RUN_DIR.glob("new-*.json"))
SUITES_RUN = ("bf16", "bf16_grouped", "dense", "grouped_contiguous", "grouped_decode", "grouped_masked",
              "matmul_fp8")
PNG = b"\x89PNG\r\n\x1a\n"


def test_the_committed_run_is_there():
    assert [path.name for path in H100_RUN] == [f"new-{suite}.json" for suite in SUITES_RUN]


def test_report_from_the_h100_run(tmp_path):
    pytest.importorskip("matplotlib")
    assert cli.main(["--report-from", *map(str, H100_RUN), "--report", str(tmp_path)]) == 0
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [*(f"ratio-{suite}.png" for suite in SUITES_RUN), "report.html", "roofline.png"]
    for name in names[:-2] + ["roofline.png"]:
        assert (tmp_path / name).read_bytes().startswith(PNG) and (tmp_path / name).stat().st_size > 20_000
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(SUITES_RUN) + 1
    assert all(base64.b64decode(image).startswith(PNG) for image in images)
    documents = [json.loads(path.read_text()) for path in H100_RUN]
    problems = sum(len(suite["problems"]) for doc in documents for suite in doc["suites"])
    assert page.count("<tr><td>") == problems
    assert "NVIDIA H100 80GB HBM3" in page
    assert "geometric means of the ratios: cublas_blockwise M&lt;=128: 1.234" in page


def test_labels_and_gpu():
    assert plots.problem_label({"m": 64, "n": 2112, "k": 7168}) == "64x2112x7168"
    assert plots.problem_label({"m": 256, "n": 4096, "k": 7168, "num_groups": 4, "layout": "masked"}) == \
        "4x[256x4096x7168] masked"
    assert plots.problem_label({"m": 4096, "n": 7168, "k": 2048, "major": "tn"}) == "4096x7168x2048 TN"
    assert plots._gpu_of([{"env": {"device": "NVIDIA H200"}}]).hbm_tbps == 4.8
    assert plots._gpu_of([{"env": {"device": "NVIDIA H100 80GB HBM3"}}]).hbm_tbps == 3.35
    assert plots._gpu_of([{"env": {"device": "cpu"}}]) is None


def test_without_matplotlib_the_cli_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--report-from", str(H100_RUN[0]), "--report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "pip install 'deepgemm[plot]'" in capsys.readouterr().err
    with pytest.raises(ImportError, match=r"deepgemm\[plot\]"):
        plots.write_report([], tmp_path)


def test_report_from_refuses_other_files(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    other = tmp_path / "other.json"
    other.write_text('{"schema": "something else"}')
    with pytest.raises(SystemExit):
        cli.main(["--report-from", str(other)])
    assert "not a benchmark JSON file" in capsys.readouterr().err


def test_report_after_a_cpu_run(tmp_path):
    pytest.importorskip("matplotlib")
    assert cli.main(["--suite", "dense", "--cpu", "--num-tests", "1", "--report", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.html", "roofline.png"]

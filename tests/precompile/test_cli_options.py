"""The CLI's family options: defaults, the rules each family's fields follow, JSON fields, and every
benchmark suite name as a preset (``--list`` builds nothing)."""

import json

import pytest
import torch

from deepgemm.bench.suites import SUITES
from deepgemm.precompile import FAMILY_KERNEL_SPECS
from deepgemm.precompile.cli import FAMILY_OPTIONS, json_requests, main, shape_requests


def test_every_family_has_its_options():
    assert set(FAMILY_OPTIONS) == set(FAMILY_KERNEL_SPECS)


def test_family_defaults():
    (w4,), (w8,) = shape_requests("16", 256, 512, "w4a16"), shape_requests("16", 256, 512, "w8a16")
    assert (w4.group_size, w8.group_size) == (128, None)
    (tf32,), (wgrad,) = shape_requests("16", 256, 512, "tf32"), shape_requests("16", 256, 512, "fp8_1d1d")
    assert (tf32.out_dtype, wgrad.out_dtype) == (torch.float32, torch.float32)
    (cast,) = shape_requests("16", 256, 512, "cast", in_dtype="fp32")
    assert cast.in_dtype == torch.float32
    (int8,) = shape_requests("16", 256, 512, "int8", out_dtype="fp16", bias="fp16", azp=True)
    assert (int8.out_dtype, int8.bias_dtype, int8.has_azp) == (torch.float16, torch.float16, True)
    (grouped,) = shape_requests("1024", 256, 512, "fp8_grouped_linear", num_groups=4)
    assert (grouped.layout, grouped.num_groups) == ("contiguous", 4)
    (none,) = shape_requests("16", 256, 512, "w4a16", group_size="none", zeros=True)
    assert (none.group_size, none.has_zeros) == (None, True)


SHAPE = ["--shape", "64,256,256"]


@pytest.mark.parametrize("args, message", [
    (["--family", "tf32", "--out-dtype", "bf16"], "out_dtype must be one of fp32 for family tf32"),
    (["--major", "nn"], "major 'nn' does not apply to family fp8_1d2d"),
    (["--family", "bf16", "--layout", "masked", "--major", "tn"], "with layout masked (nt only)"),
    (["--family", "int8", "--out-dtype", "int32", "--bias", "fp32"], "bias must be one of none (int32 d)"),
    (["--family", "int8", "--bias", "fp16"], "bias must be one of fp32, bf16 for out_dtype bf16"),
    (["--family", "int8", "--out-dtype", "int32", "--azp"], "azp does not apply to family int8 (int32 d"),
    (["--azp"], "azp does not apply to family fp8_1d2d"),
    (["--family", "w8a16", "--zeros"], "zeros does not apply to family w8a16"),
    (["--family", "w4a16", "--group-size", "100"], "group_size must be none or a positive multiple of 64"),
    (["--family", "int8", "--group-size", "128"], "group_size does not apply to family int8"),
    (["--family", "fp8_1d1d", "--out-dtype", "bf16", "--has-c"], "accumulates (has_c)"),
    (["--family", "fp8_1d1d", "--out-dtype", "bf16", "--layout", "k_grouped"], "accumulates (has_c)"),
    (["--family", "cast", "--out-dtype", "fp32"], "family cast takes no out_dtype"),
    (["--in-dtype", "fp16"], "family fp8_1d2d takes no in_dtype"),
    (["--family", "bf16", "--in-dtype", "fp32"], "in_dtype must be one of bf16, fp16 for family bf16"),
    (["--family", "bf16", "--layout", "masked", "--has-c"], "has_c does not apply to family bf16 with"),
    (["--layout", "k_grouped"], "layout must be one of dense, contiguous, masked for family fp8_1d2d"),
    (["--family", "w8a16", "--layout", "contiguous"], "layout must be one of dense, masked for family w8a16"),
    (["--family", "fp8_grouped_linear", "--layout", "dense"], "layout must be one of contiguous for family"),
])
def test_family_option_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*SHAPE, *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_json_fields_of_the_families(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps([
        {"m": 64, "n": 256, "k": 512, "family": "int8", "bias": "fp32", "azp": True},
        {"m": "1-2", "n": 256, "k": 512, "family": "w4a16", "group_size": None, "zeros": True},
        {"m": 64, "n": 256, "k": 1024, "family": "fp8_1d1d", "layout": "k_grouped", "groups": 4,
         "has_c": True},
        {"m": 64, "n": 256, "k": 512, "family": "tf32x3", "major": "nn"},
    ]))
    int8, w4_1, w4_2, wgrad, tf32x3 = json_requests(path)
    assert (int8.bias_dtype, int8.has_azp) == (torch.float32, True)
    assert [w4_1.m, w4_2.m] == [1, 2] and (w4_1.group_size, w4_1.has_zeros) == (None, True)
    assert (wgrad.layout, wgrad.num_groups, wgrad.has_c) == ("k_grouped", 4, True)
    assert (tf32x3.family, tf32x3.major) == ("tf32x3", "nn")
    path.write_text(json.dumps([{"m": 64, "n": 256, "k": 512, "family": "w8a16", "zeros": True}]))
    with pytest.raises(ValueError, match="shape 0 .*zeros does not apply to family w8a16"):
        json_requests(path)


@pytest.mark.parametrize("name", ["wgrad", "wgrad_k_grouped", "wonly", "wonly_w8", "train_step", "int8",
                                  "tf32", "fp32", "cast"])
def test_suite_presets_list_their_kernels(name, capsys):
    assert name in SUITES
    assert main(["--preset", name, "--list", "--compiler", "nvrtc", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    count = int(out.split("deepgemm precompile: ")[1].split(" kernels")[0])
    assert count > 0 and len(out.splitlines()) == count + 1

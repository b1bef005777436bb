"""Knobs: typed parsing, defaults, the docs table, and that no other module reads the environment."""

from pathlib import Path

import pytest

from deepgemm.jit import knobs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for knob in knobs.KNOBS:
        monkeypatch.delenv(knob.name, raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)


def test_defaults():
    assert knobs.jit_cache_dir() == Path.home() / ".cache" / "deepgemm"
    assert knobs.jit_compiler() == "auto"
    assert knobs.jit_cpp_standard() == 20
    assert knobs.jit_nvcc() is None and knobs.cuda_home() is None
    flags = [knobs.jit_disable_cache, knobs.jit_with_lineinfo, knobs.jit_ptxas_verbose,
             knobs.jit_ptxas_check, knobs.jit_print_compiler_command, knobs.jit_debug, knobs.print_configs,
             knobs.debug_check_indices]
    assert not any(flag() for flag in flags)


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True), (" yes ", True),
                                             ("0", False), ("false", False), ("off", False), ("", False)])
def test_bool_spellings(monkeypatch, value, expected):
    monkeypatch.setenv("DG_JIT_DEBUG", value)
    assert knobs.jit_debug() is expected


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("DG_JIT_PTXAS_CHECK", "maybe")
    with pytest.raises(ValueError, match="DG_JIT_PTXAS_CHECK"):
        knobs.jit_ptxas_check()
    monkeypatch.setenv("DG_JIT_COMPILER", "clang")
    with pytest.raises(ValueError, match="DG_JIT_COMPILER.*auto, nvrtc, nvcc"):
        knobs.jit_compiler()
    monkeypatch.setenv("DG_JIT_CPP_STANDARD", "14")
    with pytest.raises(ValueError, match="DG_JIT_CPP_STANDARD"):
        knobs.jit_cpp_standard()


def test_paths_and_choices(monkeypatch, tmp_path):
    monkeypatch.setenv("DG_JIT_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("DG_JIT_COMPILER", "NVRTC")
    monkeypatch.setenv("DG_JIT_CPP_STANDARD", "17")
    monkeypatch.setenv("CUDA_PATH", "/opt/cuda")
    assert knobs.jit_cache_dir() == tmp_path / "c"
    assert knobs.jit_compiler() == "nvrtc"
    assert knobs.jit_cpp_standard() == 17
    assert knobs.cuda_home() == Path("/opt/cuda")
    monkeypatch.setenv("CUDA_HOME", "/opt/other")
    assert knobs.cuda_home() == Path("/opt/other")


def test_every_knob_is_dg_prefixed_except_the_standard_cuda_one():
    names = [knob.name for knob in knobs.KNOBS]
    assert len(names) == len(set(names))
    assert all(name.startswith("DG_") for name in names if name != "CUDA_HOME")


def test_docs_table_is_generated_from_the_knobs():
    assert (REPO / "docs" / "knobs.md").read_text() == knobs.render_markdown(), (
        "docs/knobs.md is stale: regenerate it with python -c "
        "\"from deepgemm.jit import knobs; print(knobs.render_markdown(), end='')\" > docs/knobs.md")


def test_only_knobs_reads_the_environment():
    offenders = [str(path.relative_to(REPO)) for path in (REPO / "deepgemm").rglob("*.py")
                 if path.name != "knobs.py"
                 and any(word in path.read_text() for word in ("os.environ", "getenv", "putenv"))]
    assert offenders == [], "read environment variables through deepgemm.jit.knobs"

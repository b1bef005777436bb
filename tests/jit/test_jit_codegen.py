"""The generated instantiation stub."""

import pytest

from deepgemm.jit.codegen import kernel_short_name, render_stub, render_template_arg


def test_stub_records_the_config_and_instantiates_the_template():
    stub = render_stub("deepgemm/impls/sm90_fp8_gemm_1d2d.cuh", "deepgemm::sm90_fp8_gemm_1d2d",
                       (128, 112, True, False, "deepgemm::GemmType::Normal"),
                       comment="GemmConfig(block_m=128, block_n=112)\nsecond line")
    assert stub.splitlines()[:3] == [
        "// deepgemm JIT kernel: sm90_fp8_gemm_1d2d",
        "// GemmConfig(block_m=128, block_n=112)",
        "// second line",
    ]
    assert "#include <deepgemm/impls/sm90_fp8_gemm_1d2d.cuh>\n" in stub
    assert ("(void)reinterpret_cast<const void*>(&deepgemm::sm90_fp8_gemm_1d2d"
            "<128, 112, true, false, deepgemm::GemmType::Normal>);") in stub


def test_stub_is_deterministic():
    args = ("a.cuh", "ns::k", (1, True), "c")
    assert render_stub(*args) == render_stub(*args)


@pytest.mark.parametrize("arg, text", [(True, "true"), (False, "false"), (0, "0"), (-3, "-3"),
                                       (" Foo::Bar ", "Foo::Bar")])
def test_template_arg_spelling(arg, text):
    assert render_template_arg(arg) == text


@pytest.mark.parametrize("arg", [1.5, None, "", "a\nb", (1, 2)])
def test_bad_template_args(arg):
    with pytest.raises(TypeError, match="template argument"):
        render_template_arg(arg)


@pytest.mark.parametrize("kernel", ["", "1abc", "ns::", "a b", "k<1>"])
def test_bad_kernel_names(kernel):
    with pytest.raises(ValueError, match="kernel"):
        render_stub("a.cuh", kernel, ())


@pytest.mark.parametrize("header", ["/abs/a.cuh", "a b.cuh", "a.cuh>", ""])
def test_bad_headers(header):
    with pytest.raises(ValueError, match="header"):
        render_stub(header, "k", ())


def test_short_name():
    assert kernel_short_name("deepgemm::impl::sm90_bf16_gemm") == "sm90_bf16_gemm"
    assert kernel_short_name("scale_add") == "scale_add"

"""Tests of ``deepgemm.jit`` (knobs, codegen, cache, compilers, runtime); ``kernels/`` holds the small CUDA
kernels they build."""

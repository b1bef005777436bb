"""Tests of ``deepgemm.quant``: FP8 casts and scale layouts."""

"""Tests of ``deepgemm.testing``: the accuracy metric, reference GEMMs, input generators, timers."""

"""Tests of ``deepgemm.heuristics``: config validity, selection, and the frozen table of selections."""

"""Tests of ``deepgemm.cuda``: host-side TMA descriptor checks."""

"""Tests of the shipped kernel templates (``deepgemm/include``): every config the heuristics select compiles
for sm_90a with no local memory, and the host mirrors of the kernels' layouts agree with them."""

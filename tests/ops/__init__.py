"""Tests of ``deepgemm.ops``: validation, the CPU path, the host path with a stubbed GPU, ``matmul``,
``torch.compile``, and on a Hopper GPU every op's results."""

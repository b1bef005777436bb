"""The ``gpu`` marker and its skip, for every test under ``tests/``.

A test (or a module, through ``pytestmark``) marked ``gpu`` needs a Hopper GPU (sm_90). Where torch sees
none, each such test is reported as skipped on its own, with the reason, so that a CPU run still counts
every GPU test and ``pytest -m gpu`` collects all of them. GPU test modules must therefore import on a
machine without CUDA: whatever touches the device belongs in tests and fixtures, not at module level.
"""

from __future__ import annotations

import functools

import pytest
import torch

GPU_MARKER = "gpu: needs a Hopper (sm_90) GPU; skipped, test by test, where torch sees none"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", GPU_MARKER)


@functools.cache
def no_hopper_reason() -> str | None:
    """Why the ``gpu`` tests cannot run here, or ``None`` when device 0 is a Hopper GPU."""
    if not torch.cuda.is_available():
        return "needs an sm_90 (Hopper) GPU; torch.cuda.is_available() is False"
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        return f"needs an sm_90 (Hopper) GPU; device 0 is {torch.cuda.get_device_name()} (sm_{major}{minor})"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    reason = no_hopper_reason() if gpu_items else None
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in gpu_items:
        item.add_marker(skip)

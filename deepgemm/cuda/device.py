"""Per-device properties and contexts, queried once per device and cached. Device indices are torch's (the
driver numbers the devices that ``CUDA_VISIBLE_DEVICES`` leaves visible in the same order as torch)."""

from __future__ import annotations

import functools

import torch
from cuda.bindings import driver

from deepgemm.cuda.driver import call

_ATTR = driver.CUdevice_attribute


def device_index(device: int | str | torch.device | None = None) -> int:
    """The CUDA device index of ``device``; ``None`` means torch's current device."""
    if device is None:
        return torch.cuda.current_device()
    if isinstance(device, int):
        return device
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device {device}: expected a CUDA device")
    return device.index if device.index is not None else torch.cuda.current_device()


@functools.cache
def get_device(index: int) -> driver.CUdevice:
    return call(driver.cuDeviceGet, index)


@functools.cache
def _attribute(index: int, attribute: driver.CUdevice_attribute) -> int:
    return call(driver.cuDeviceGetAttribute, attribute, get_device(index))


def get_max_smem_per_block_optin(device: int | str | torch.device | None = None) -> int:
    """Largest dynamic shared memory one block may opt into, in bytes (232448 on Hopper)."""
    return _attribute(device_index(device), _ATTR.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)


@functools.cache
def get_primary_context(index: int) -> driver.CUcontext:
    """The device's primary context: the one the CUDA runtime, and so torch, uses. Retained once and never
    released, which keeps it alive for the process like the runtime does."""
    return call(driver.cuDevicePrimaryCtxRetain, get_device(index))

"""Device settings (how many SMs the persistent kernels use) and the Hopper capability check."""

import functools
import numbers

import torch

REQUIRED_CAPABILITY = (9, 0)

_num_sms: int | None = None


@functools.cache
def _device_properties(index: int) -> "torch._C._CudaDeviceProperties":
    # Cached: the ops read these on every call and they never change for a device.
    return torch.cuda.get_device_properties(index)


def _current_device_sm_count() -> int:
    if not torch.cuda.is_available():
        raise RuntimeError(
            "deepgemm: no CUDA device is available, so there is no SM count to use or to check against; "
            "SM settings only apply to GPU runs (CPU tensors take the CPU path and ignore them)"
        )
    return _device_properties(torch.cuda.current_device()).multi_processor_count


def set_num_sms(num_sms: int | None) -> None:
    """Make the GPU kernels launch ``num_sms`` persistent CTAs (one per SM), leaving the rest idle.

    Useful to leave SMs to communication kernels running alongside. ``num_sms`` must be an int with
    ``1 <= num_sms <= `` the current CUDA device's SM count; ``None`` restores the default (all SMs).
    The setting is process-wide. Odd counts are allowed, but configs with 2-CTA clusters (TMA
    multicast) are only chosen when the count is even, because every CTA needs its cluster peer.

    Raises ``TypeError`` for a non-int (``bool`` included), ``ValueError`` for a count out of range,
    ``RuntimeError`` when no CUDA device is available to check it against.
    """
    global _num_sms
    if num_sms is None:
        _num_sms = None
        return
    if isinstance(num_sms, bool) or not isinstance(num_sms, numbers.Integral):
        raise TypeError(f"num_sms must be an int, got {type(num_sms).__name__}")
    if num_sms < 1:
        raise ValueError(f"num_sms must be >= 1, got {num_sms}")
    device_sms = _current_device_sm_count()
    if num_sms > device_sms:
        raise ValueError(f"num_sms must be <= the current device's SM count ({device_sms}), got {num_sms}")
    _num_sms = int(num_sms)


def get_num_sms() -> int:
    """The number of SMs the GPU kernels use: the ``set_num_sms`` value, else the current CUDA
    device's SM count.

    Raises ``RuntimeError`` when nothing was set and no CUDA device is available: there is no
    meaningful count to return, and an int-or-None result would burden every caller.
    """
    if _num_sms is not None:
        return _num_sms
    return _current_device_sm_count()


def num_sms_for(index: int) -> int:
    """``get_num_sms()`` for a launch on CUDA device ``index``: the ``set_num_sms`` value, else that
    device's SM count. For the launch path: no availability check (a CUDA tensor proves CUDA works) and
    the device is the one the kernel runs on, not torch's current one."""
    if _num_sms is not None:
        return _num_sms
    return _device_properties(index).multi_processor_count


def check_hopper(device: torch.device) -> None:
    """Raise ``RuntimeError`` unless the CUDA ``device`` is a Hopper GPU (compute capability 9.0).

    The kernels are compiled for ``sm_90a``, whose instructions (WGMMA, TMA multicast, setmaxnreg)
    exist on no other architecture, so any other GPU must be refused before a launch.
    """
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = _device_properties(index)
    found = (props.major, props.minor)
    if found != REQUIRED_CAPABILITY:
        raise RuntimeError(
            f"deepgemm needs a Hopper GPU (sm_90, compute capability 9.0); {device} is "
            f"{props.name} (sm_{props.major}{props.minor}, compute capability {props.major}.{props.minor})"
        )


# Indices of the CUDA devices ``check_hopper`` has passed: a device's capability never changes.
_hopper_devices: set[int] = set()


def require_hopper(index: int) -> None:
    """``check_hopper`` for CUDA device ``index``, remembered once passed (ops call it on every GPU call)."""
    if index not in _hopper_devices:
        check_hopper(torch.device("cuda", index))
        _hopper_devices.add(index)


def hopper_index(device: torch.device) -> int | None:
    """The index of the CUDA ``device`` after ``require_hopper``; ``None`` for the CPU (the ops' checks have
    refused any other device type)."""
    if device.type != "cuda":
        return None
    require_hopper(device.index)
    return device.index

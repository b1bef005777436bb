"""What the GPU launch path of a family hands the driver, recorded without a GPU: the kernels it loads (name,
header, template arguments, stub comment, parameter types, launch shape), the tensor maps it encodes and
the arguments of every launch, with the kernel, the TMA encoding and the split-K workspace stubbed out on
CPU tensors. Tensor addresses are recorded by name (``"A"``, ``"workspace"``; a tensor the launch path
made itself, such as a padded copy of the B scales, as ``"new"``: the allocator may hand a freed one's
address to the next), so a record is the same on every run and can be compared with one kept from
another version of the code (``tests/ops/data/launch_args.json``, see ``test_launch_args.py``)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from types import SimpleNamespace

import torch

# The modules whose launch paths are recorded; each one's `make_tma_descriptor`, `get_kernel` and plan
# caches are stubbed where it has them.
MODULES = ("deepgemm.ops.common.launch", "deepgemm.ops.common.split_k", "deepgemm.ops.fp8.kernel",
           "deepgemm.ops.bf16.kernel", "deepgemm.ops.int8.kernel", "deepgemm.ops.tf32.kernel")
NUM_SMS = 132
# `CompiledKernel.launcher`'s defaults (deepgemm/jit/runtime.py).
LAUNCHER_DEFAULTS = {"smem": 0, "cluster": 1}


def _plain(value: object) -> object:
    """``value`` as JSON holds it (tuples as lists, dtypes and enums as strings)."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


class Recorder:
    """One case's events, in order; ``tensors`` names the addresses of the case's inputs."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.events: list[list] = []
        self.names: dict[int, str] = {}
        for name, tensor in tensors.items():
            self.names.setdefault(tensor.data_ptr(), name)

    def name_of(self, ptr: int) -> str:
        return self.names.get(ptr, "new")

    def tma(self, ptr, dtype, dims, strides, box, swizzle=0):
        self.events.append(["tmap", self.name_of(ptr), str(dtype), _plain(dims), _plain(strides), _plain(box),
                            swizzle])
        return ("tmap", sum(1 for event in self.events if event[0] == "tmap") - 1)

    def get_kernel(self, name, header, template_args, comment=""):
        self.events.append(["kernel", name, header, _plain(template_args), comment])
        recorder = self

        class Kernel:
            def launcher(self, param_types, **launch_shape):
                # The launcher's own defaults filled in: passing them explicitly is the same launch.
                shape = {**LAUNCHER_DEFAULTS, **launch_shape}
                recorder.events.append(["launcher", _plain(param_types), _plain(sorted(shape.items()))])
                return recorder.launch

        return Kernel()

    def launch(self, *args) -> None:
        self.events.append(["launch", [self._arg(arg) for arg in args]])

    def _arg(self, arg: object) -> object:
        if isinstance(arg, tuple) and arg and arg[0] == "tmap":
            return f"tmap{arg[1]}"
        # No size, stride or count of these cases reaches 2^32; a CPU tensor's address does.
        if isinstance(arg, int) and not isinstance(arg, bool) and (arg in self.names or arg >= 2**32):
            return self.name_of(arg)
        return _plain(arg)

    def result(self) -> dict:
        """The kernels loaded, as a sorted list of their "kernel" and "launcher" events (the order a plan
        loads its kernels in is free), and the other events in order."""
        kernels = [[self.events[i], self.events[i + 1]] for i, event in enumerate(self.events)
                   if event[0] == "kernel"]
        return {"kernels": sorted(kernels, key=json.dumps),
                "calls": [event for event in self.events if event[0] not in ("kernel", "launcher")]}


def record(monkeypatch, tensors: dict[str, torch.Tensor], call: Callable[[SimpleNamespace], object]) -> dict:
    """The events of ``call(modules)`` (``modules.fp8`` is ``deepgemm.ops.fp8.kernel``, ...) on a fake H100,
    with fresh plan caches; ``tensors`` names the case's inputs. An exception ends the record with its
    type and message."""
    from deepgemm.ops.common import launch, settings, split_k

    recorder = Recorder(tensors)
    props = SimpleNamespace(major=9, minor=0, name="H100", multi_processor_count=NUM_SMS)
    monkeypatch.setattr(settings, "_device_properties", lambda index: props)
    monkeypatch.setattr(settings, "_num_sms", None)

    def workspace(split):
        out = torch.zeros(split.shape, dtype=torch.float32)
        recorder.names[out.data_ptr()] = "workspace"
        return out

    monkeypatch.setattr(split_k.SplitK, "workspace", workspace)
    modules = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        modules[module_name.split(".")[-2 if module_name.endswith(".kernel") else -1]] = module
        if hasattr(module, "make_tma_descriptor"):
            monkeypatch.setattr(module, "make_tma_descriptor", recorder.tma)
        if hasattr(module, "get_kernel"):
            monkeypatch.setattr(module, "get_kernel", recorder.get_kernel)
        for attr, value in list(vars(module).items()):
            if isinstance(value, launch.PlanCache):
                monkeypatch.setattr(module, attr, launch.PlanCache(value.max_plans))
    ones = torch.ones(1)
    recorder.names[ones.data_ptr()] = "ones"
    monkeypatch.setattr(modules["int8"], "_ones", lambda index: ones)
    monkeypatch.setattr(modules["int8"], "_ONES", {})
    _clear_memos(modules.values())
    try:
        call(SimpleNamespace(**modules))
    except (TypeError, ValueError) as error:
        recorder.events.append(["raises", type(error).__name__, str(error)])
    finally:
        _clear_memos(modules.values())
    return recorder.result()


def _clear_memos(modules) -> None:
    """Empties the modules' `lru_cache`s (the launchers they hold were made by a stub)."""
    for module in modules:
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)) and hasattr(value, "__wrapped__"):
                value.cache_clear()

"""Deferred imports of the GPU path: CPU use of the ops never loads the CUDA driver modules."""

import importlib
from collections.abc import Callable


def lazy_import(module: str, attribute: str | None = None) -> Callable[[], object]:
    """A function returning `module` (or its `attribute`), imported on the first call. Later calls cost
    a closure read, not an `import` statement (a `sys.modules` lookup per call)."""
    imported = None

    def get():
        nonlocal imported
        if imported is None:
            loaded = importlib.import_module(module)
            imported = getattr(loaded, attribute) if attribute else loaded
        return imported

    return get

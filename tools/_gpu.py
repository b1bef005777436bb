"""The one check the GPU-only tools make before touching the device: a Hopper GPU, or one line on stderr
and exit status 2 (a usage problem, as argparse reports one), rather than a torch traceback."""

from __future__ import annotations

import os
import sys

import torch

EXIT_NO_GPU = 2


def no_hopper_reason() -> str | None:
    """What torch sees instead of a Hopper (sm_90) GPU, or None when device 0 is one."""
    if not torch.cuda.is_available():
        return "torch sees none" + (" (a CPU-only build of torch)" if torch.version.cuda is None else "")
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        return f"torch sees {torch.cuda.get_device_name()} (sm_{major}{minor})"
    return None


def require_hopper() -> None:
    """Exit with status 2 and ``<tool>: needs a Hopper (sm_90) GPU; <what torch sees>`` on stderr unless
    device 0 is a Hopper GPU."""
    reason = no_hopper_reason()
    if reason is not None:
        tool = os.path.basename(sys.argv[0])
        print(f"{tool}: needs a Hopper (sm_90) GPU; {reason}", file=sys.stderr)
        sys.exit(EXIT_NO_GPU)

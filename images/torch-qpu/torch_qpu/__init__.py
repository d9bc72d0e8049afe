"""torch_qpu: PyTorch ops on the Raspberry Pi's VideoCore IV QPUs.

Backends: ``qpu`` (the real GPU: torch_qpu's own hand-scheduled kernels, or QPULib's),
``emulator`` (QPULib's software emulator, any CPU), ``qpusim`` (host builds: the machine code
on VC4C's cycle-stepped emulator) and ``cpu`` (plain torch); ``auto`` offloads only what the
QPUs do faster than the Pi's CPU. See README.md, and run ``python -m torch_qpu doctor`` on a
Pi.
"""

from __future__ import annotations

import torch as _torch

# The operators' fake kernels and autograd formulas use torch.library's
# register_fake/register_autograd (and the tests opcheck), all new in 2.4.
MIN_TORCH = (2, 4)
if tuple(int(p) for p in _torch.__version__.split("+")[0].split(".")[:2]) < MIN_TORCH:
    raise ImportError(
        f"torch_qpu needs torch >= {MIN_TORCH[0]}.{MIN_TORCH[1]} (torch.library.register_fake, "
        f"register_autograd); this is torch {_torch.__version__}"
    )

from . import nn  # noqa: E402
from ._backend import (  # noqa: E402
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    build_info,
    build_mode,
    get_auto_threshold,
    get_backend,
    get_kernels,
    get_num_qpus,
    set_auto_threshold,
    set_backend,
    set_kernels,
    set_num_qpus,
    stats,
)
from .nn import convert  # noqa: E402
from .ops import ResidentWeight, add, linear, mm, mul, mv, sub  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "ResidentWeight",
    "add",
    "available_backends",
    "build_info",
    "build_mode",
    "convert",
    "get_auto_threshold",
    "get_backend",
    "get_kernels",
    "get_num_qpus",
    "linear",
    "mm",
    "mul",
    "mv",
    "nn",
    "set_auto_threshold",
    "set_backend",
    "set_kernels",
    "set_num_qpus",
    "stats",
    "sub",
]

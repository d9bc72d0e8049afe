"""torch_qpu: PyTorch ops on the Raspberry Pi's VideoCore IV QPUs.

Backends: ``qpu`` (QPULib on the real GPU), ``emulator`` (QPULib's software
emulator, any CPU) and ``cpu`` (plain torch). See README.md, and run
``python -m torch_qpu doctor`` on a Pi.
"""

from __future__ import annotations

from . import nn
from ._backend import (
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    build_info,
    build_mode,
    get_auto_threshold,
    get_backend,
    get_num_qpus,
    set_auto_threshold,
    set_backend,
    set_num_qpus,
    stats,
)
from .nn import convert
from .ops import ResidentWeight, add, linear, mm, mul, mv, sub

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
    "get_num_qpus",
    "linear",
    "mm",
    "mul",
    "mv",
    "nn",
    "set_auto_threshold",
    "set_backend",
    "set_num_qpus",
    "stats",
    "sub",
]

"""Backend registry: which backends this build can run and which one to use.

Four backends share one API:

* ``qpu``: QPULib in QPU mode, the real VideoCore IV on a Raspberry Pi;
* ``emulator``: QPULib's emulator (emulation or qpusim build), the same
  kernels on any CPU (slow, for testing kernels off the Pi);
* ``qpusim``: a qpusim build only (host tests and benchmarks, never in Pi
  images): the machine code QPU mode would launch, run by VC4C's
  cycle-stepped VideoCore IV emulator, which counts cycles;
* ``cpu``: plain torch, always available.

``auto`` (the default) picks ``qpu`` only for calls that torch_qpu.offload's cost model
puts ahead of the Pi's CPU (copies and launches included, the CPU at its best published
figure, a 15 % margin), and never below the work threshold; ``cpu`` otherwise. It never
picks an emulator, which is only ever chosen by name. ``qpu`` is only
offered once a probe launch of a tiny kernel succeeded in this process; when
it did not, ``auto`` uses cpu and warns once.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

BACKENDS = ("qpu", "emulator", "qpusim", "cpu")
CHOICES = (*BACKENDS, "auto")
MAX_QPUS = 12
# Elements of work (multiply-adds or elementwise outputs) below which `auto` does not ask the
# cost model (a launch costs more than such work); above it the model decides.
DEFAULT_AUTO_THRESHOLD = 1 << 15


class BackendUnavailableError(RuntimeError):
    """The requested backend is not part of this build or cannot run here."""


def _load_extension() -> ModuleType:
    """Import torch_qpu._C: it registers the operators (torch.ops.torch_qpu.*)."""
    import importlib.util

    if importlib.util.find_spec(f"{__package__}._C") is None:
        raise ImportError(
            "this torch_qpu has no operators (no torch_qpu._C): it was built where torch was not "
            "importable (pip's build isolation?). Reinstall it against the installed torch: "
            "`pip install --no-build-isolation images/torch-qpu` (see its README)"
        )
    try:
        from . import _C  # type: ignore[attr-defined]
    except ImportError as err:
        raise ImportError(
            f"torch_qpu's operators (torch_qpu._C) cannot be loaded: {err}. torch_qpu is compiled "
            "against the installed torch: reinstall it with `pip install --no-build-isolation "
            "images/torch-qpu` (see its README) after any change of torch"
        ) from err
    return _C


_EXT = _load_extension()
# The firmware does not free GPU memory when a process ends: give it back at
# interpreter exit (and the C++ runtime's destructor does, for exits that skip
# atexit but run static destructors). Hardware fix 5.
atexit.register(_EXT.release_gpu_memory)


@dataclass
class _Settings:
    backend: str = "auto"
    num_qpus: int = MAX_QPUS
    auto_threshold: int = DEFAULT_AUTO_THRESHOLD


def _settings_from_env() -> _Settings:
    settings = _Settings()
    backend = os.environ.get("TORCH_QPU_BACKEND")
    if backend:
        settings.backend = _check_name(backend, "TORCH_QPU_BACKEND")
    num_qpus = os.environ.get("TORCH_QPU_NUM_QPUS")
    if num_qpus:
        settings.num_qpus = _check_num_qpus(int(num_qpus))
    threshold = os.environ.get("TORCH_QPU_AUTO_THRESHOLD")
    if threshold:
        settings.auto_threshold = int(threshold)
    return settings


def _check_name(name: str, where: str = "backend") -> str:
    if name not in CHOICES:
        raise ValueError(f"unknown {where} {name!r}: choose one of {', '.join(CHOICES)}")
    return name


def _check_num_qpus(num_qpus: int) -> int:
    if isinstance(num_qpus, bool) or not isinstance(num_qpus, int):
        raise TypeError(f"num_qpus must be an int, got {type(num_qpus).__name__}")
    if not 1 <= num_qpus <= MAX_QPUS:
        raise ValueError(f"num_qpus must be in 1..{MAX_QPUS}, got {num_qpus}")
    return num_qpus


_SETTINGS = _settings_from_env()


def set_kernels(name: str) -> None:
    """Which kernels the qpu and qpusim backends run: 'asm' (torch_qpu's own, the default
    where the build has them) or 'qpulib' (QPULib's, kept for comparison). The emulator
    backend always runs QPULib's."""
    if name not in _EXT.kernel_sets:
        raise ValueError(
            f"unknown kernel set {name!r}: this build has {', '.join(_EXT.kernel_sets)}"
        )
    _EXT.set_kernels(name)


def get_kernels() -> str:
    return str(_EXT.get_kernels())


if os.environ.get("TORCH_QPU_KERNELS"):
    try:
        set_kernels(os.environ["TORCH_QPU_KERNELS"])
    except ValueError as err:
        raise ValueError(f"TORCH_QPU_KERNELS: {err}") from None


def extension() -> ModuleType:
    """The compiled extension (runtime counters; the operators are torch.ops.torch_qpu)."""
    return _EXT


def build_mode() -> str | None:
    """'qpu', 'emulation' or 'qpusim' for a QPULib build, None for a cpu-only build."""
    mode = _EXT.mode
    return None if mode is None else str(mode)


def build_info() -> dict[str, str | None]:
    """How this package was built: QPULib mode, upstream commit, prefix."""
    info: dict[str, str | None] = {"qpulib_mode": build_mode()}
    try:
        from ._build_info import BUILD_INFO  # type: ignore[import-not-found]
    except ImportError:  # cpu-only build: setup.py wrote no record
        return info
    info.update(BUILD_INFO)
    return info


def qpu_device_problems() -> list[str]:
    """Why the QPUs cannot be driven from this process (empty when they can).

    Checked before each launch on the qpu backend: QPULib needs the mailbox
    (/dev/vcio) and /dev/mem, which means root on Raspberry Pi OS.
    """
    problems = []
    for path in ("/dev/vcio", "/dev/mem"):
        if not os.path.exists(path):
            problems.append(f"{path} does not exist")
        elif not os.access(path, os.R_OK | os.W_OK):
            problems.append(f"{path} is not readable and writable (run as root)")
    return problems


_PROBE_LOCK = threading.Lock()
_probe_result: str | None = None  # None: not probed yet; "": the probe launch ran
_warned_auto = False


def qpu_probe() -> str:
    """Why a probe launch on the QPUs failed in this process ('' when it ran).

    A qpu build launches a tiny kernel once (on first use) and remembers the
    outcome: the device files can be there and the firmware still refuse the
    job (vc4-kms-v3d), or /dev/mem refuse the mapping (a container without
    CAP_SYS_RAWIO). A launch that fails later makes the backend unusable too.
    """
    global _probe_result
    if build_mode() != "qpu":
        return f"not a qpu build ({build_mode() or 'cpu only'})"
    with _PROBE_LOCK:
        if _probe_result is None:
            problems = qpu_device_problems()
            _probe_result = "; ".join(problems) if problems else str(_EXT.probe())
        return _probe_result or str(_EXT.unusable())


def available_backends() -> list[str]:
    """Backends this build can run in this process, fastest first."""
    names = []
    mode = build_mode()
    if mode == "qpu" and not qpu_probe():
        names.append("qpu")
    if mode == "qpusim" and not _EXT.unusable():
        names.append("qpusim")
    if mode in ("emulation", "qpusim"):
        names.append("emulator")
    names.append("cpu")
    return names


def set_backend(name: str) -> None:
    """Choose the default backend for every op ('qpu', 'emulator', 'qpusim', 'cpu', 'auto')."""
    _check_name(name)
    if name != "auto":
        _require(name)
    _SETTINGS.backend = name


def get_backend() -> str:
    """The default backend name (may be 'auto')."""
    return _SETTINGS.backend


def set_num_qpus(num_qpus: int) -> None:
    """How many QPUs (1-12) kernels are split across by default."""
    _SETTINGS.num_qpus = _check_num_qpus(num_qpus)


def get_num_qpus() -> int:
    return _SETTINGS.num_qpus


def set_auto_threshold(elements: int) -> None:
    """Work size (elements) from which 'auto' prefers the QPU over the CPU."""
    if elements < 0:
        raise ValueError("threshold must be >= 0")
    _SETTINGS.auto_threshold = int(elements)


def get_auto_threshold() -> int:
    return _SETTINGS.auto_threshold


def _require(name: str) -> None:
    """Raise BackendUnavailableError with the fix when `name` cannot run."""
    if name == "cpu":
        return
    mode = build_mode()
    builds = {"qpu": ("qpu",), "emulator": ("emulation", "qpusim"), "qpusim": ("qpusim",)}[name]
    want = " or ".join(builds)
    if mode is None:
        raise BackendUnavailableError(
            f"the {name!r} backend needs torch_qpu built with QPULib ({want} mode); this is "
            "a cpu-only build. Rebuild with QPULIB_PREFIX=<prefix made by "
            "images/qpulib/build.sh> or RPIBUILD_QPULIB_SRC=<QPULib source tree> "
            f"and QPULIB_MODE={builds[0]}"
        )
    if mode not in builds:
        raise BackendUnavailableError(
            f"the {name!r} backend needs a QPULib {want}-mode build; this build is "
            f"{mode} mode (available: {', '.join(available_backends())})"
        )
    if name == "qpu":
        problems = qpu_device_problems()
        if problems:
            raise BackendUnavailableError(
                "the 'qpu' backend cannot run here: "
                + "; ".join(problems)
                + ". Run `python -m torch_qpu doctor` for the fixes."
            )
        failure = qpu_probe()
        if failure:
            raise BackendUnavailableError(
                f"the 'qpu' backend cannot run here: a probe launch failed ({failure}). "
                "Run `python -m torch_qpu doctor` for the cause and the fix."
            )
    elif name == "qpusim" and _EXT.unusable():
        raise BackendUnavailableError(
            f"the 'qpusim' backend is unusable in this process after a failed launch "
            f"({_EXT.unusable()})"
        )


def resolve(backend: str | None, work: int, double: bool = False, workload: Any = None) -> str:
    """The concrete backend ('qpu', 'emulator', 'qpusim' or 'cpu') for one call.

    ``double``: the inputs are float64, which only the cpu backend takes
    (``auto`` then picks it; a named kernel backend refuses in the operator).
    ``workload`` (a torch_qpu.offload.Workload): ``auto`` offloads only when the cost model
    says the QPUs beat the Pi's CPU on it (see qpu_wins); without one, the work threshold.
    """
    name = _check_name(backend) if backend is not None else _SETTINGS.backend
    if name == "auto":
        if double or work < _SETTINGS.auto_threshold:
            return "cpu"
        if workload is not None and not qpu_wins(workload):
            return "cpu"
        if "qpu" in available_backends():
            return "qpu"
        if build_mode() == "qpu":
            _warn_auto_fallback()
        return "cpu"
    _require(name)
    return name


def qpu_wins(workload: Any) -> bool:
    """Whether torch_qpu.offload's model puts this call on the QPUs: faster than the Pi's CPU
    at its best published figure with torch's threads, under the memory model (the calibrated
    one when TORCH_QPU_MEMORY_MODEL or the calibration kit's file names one) at the QPU clock
    (TORCH_QPU_CLOCK_MHZ, default 250: the Pi 3's dynamic minimum)."""
    import torch

    from . import memory_model, offload

    model = memory_model.calibrated_or_default()
    clock = float(os.environ.get("TORCH_QPU_CLOCK_MHZ", "250") or 250)
    estimate = offload.estimate(
        workload,
        dram_gbps=model.dram_bandwidth_gbps,
        clock_mhz=clock,
        threads=torch.get_num_threads(),
        num_qpus=_SETTINGS.num_qpus,
    )
    return estimate.qpu_wins


def _warn_auto_fallback() -> None:
    """One warning per process: a qpu build whose QPUs cannot run here."""
    global _warned_auto
    if _warned_auto:
        return
    _warned_auto = True
    warnings.warn(
        f"torch_qpu: backend 'auto' uses cpu: the QPUs cannot run here ({qpu_probe()}); "
        "`python -m torch_qpu doctor` says why and how to fix it",
        RuntimeWarning,
        stacklevel=4,
    )


def resolve_num_qpus(num_qpus: int | None) -> int:
    return _SETTINGS.num_qpus if num_qpus is None else _check_num_qpus(num_qpus)


def stats() -> dict[str, object]:
    """Extension counters (kernel compiles, launches, pool sizes, resident weights).

    The keys are there in every build; a build without QPULib counts nothing.
    """
    counters: dict[str, object] = {
        "kernel_compiles": 0,
        "launches": 0,
        "resident_uploads": 0,
        "resident_matrices": 0,
        "pool_capacity_floats": (0, 0, 0, 0),
        "gpu_floats": 0,
        "abandoned_floats": 0,
        "qpusim_cycles": 0,
        "qpusim_max_launch_cycles": 0,
        "launch_estimate_ratio_max": 0.0,
        "launch_estimate_ratio_qpus": 0,
        "unusable": "",
    }
    counters.update(_EXT.stats())
    return counters

"""The qpusim backend's memory model: DRAM bandwidth and latency, DMA engine rates and costs.

VC4C's emulator (rpibuild's patch images/vc4c/patches/0011-memory-model.patch) times memory in
emulated cycles (1 emulated cycle = 4 QPU clocks). A model here is in physical units (GB/s,
ns) so that one file holds for any QPU clock; ``to_cycles`` converts it for the clock the
emulated Pi runs at (250 MHz by default, 400 MHz is the Pi 3's listed ``v3d_freq``).

* ``load(path)`` / ``save(model, path)``: the flat TOML file (``memory_model.toml`` next to
  this module holds the published-figures default; ``python -m torch_qpu.calibrate`` writes
  measured ones). Errors name the file and the key.
* ``free()``: the emulator's original timing (an 8-cycle line fill and a 12-cycle DMA
  whatever their size, no contention): what the qpusim backend uses until told otherwise,
  so cycle counts stay comparable with earlier runs.
* ``set(model, clock_mhz)`` and ``use(model, clock_mhz)`` (a context manager): the model the
  qpusim backend's following launches use; ``current()`` returns it.

Why a model at all: without it the emulator charges almost nothing for memory, so a
memory-bound kernel looked as fast as its instructions. How far it can be trusted: the
extension's README, "Memory model".
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_CLOCK_MHZ = 250.0
PI3_CLOCK_MHZ = 400.0
DEFAULT_PATH = Path(__file__).with_name("memory_model.toml")
# QPU clocks per emulated cycle: a 16-lane instruction runs on 4-lane ALUs over 4 clocks.
CLOCKS_PER_CYCLE = 4.0
LINE_BYTES = 64  # an L2 cache line; also QPULib's DMA transfers (16 words)

# The model's numeric parameters, in file order (the calibration kit fits each of them).
PARAMETERS = (
    "dram_bandwidth_gbps",
    "dram_latency_ns",
    "dma_load_bandwidth_gbps",
    "dma_load_setup_ns",
    "dma_store_bandwidth_gbps",
    "dma_store_setup_ns",
)
_STRINGS = ("name", "description")
# clock_mhz: read by QPULib's own QPUSIM_MEMORY_MODEL parser only (a model is clock-free)
_IGNORED = ("clock_mhz",)


class MemoryModelError(ValueError):
    """A memory model file or value is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class MemoryModel:
    """The memory model's parameters, in physical units.

    Bandwidths in GB/s (10^9 bytes per second; ``math.inf``: unlimited), times in ns.
    ``dma_waits_stall``: QPULib's DMA waits stall the QPU, as on the hardware (only the free
    model keeps the emulator's original skipping of them).
    """

    dram_bandwidth_gbps: float
    dram_latency_ns: float
    dma_load_bandwidth_gbps: float
    dma_load_setup_ns: float
    dma_store_bandwidth_gbps: float
    dma_store_setup_ns: float
    dma_waits_stall: bool = True
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        _check(self, "")

    def to_cycles(self, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> EmulatorTiming:
        """The emulator's units at a QPU clock: bytes per emulated cycle (0 = unlimited), cycles."""
        _check_clock(clock_mhz)
        ns_per_cycle = CLOCKS_PER_CYCLE * 1000.0 / clock_mhz

        def rate(gbps: float) -> float:
            return 0.0 if math.isinf(gbps) else gbps * ns_per_cycle

        timing = EmulatorTiming(
            rate(self.dram_bandwidth_gbps),
            self.dram_latency_ns / ns_per_cycle,
            rate(self.dma_load_bandwidth_gbps),
            self.dma_load_setup_ns / ns_per_cycle,
            rate(self.dma_store_bandwidth_gbps),
            self.dma_store_setup_ns / ns_per_cycle,
            self.dma_waits_stall,
        )
        for key, value in zip(EmulatorTiming._fields[:6], timing[:6]):
            is_rate = "bytes" in key
            if value > 1e6 or (is_rate and 0 < value < 1e-3):
                raise MemoryModelError(
                    f"memory model {self.name or '(unnamed)'}: {key} = {value:g} at "
                    f"{clock_mhz:g} MHz is outside what the emulator takes (rates 0.001..1e6 "
                    "bytes per cycle, times up to 1e6 cycles)"
                )
        return timing

    def to_toml(self) -> str:
        """The flat TOML text ``load`` reads back (and QPULib's QPUSIM_MEMORY_MODEL parser)."""
        lines = [
            "# torch_qpu memory model (GB/s, ns): see torch_qpu/memory_model.py",
            f"name = {_quote(self.name)}",
            f"description = {_quote(self.description)}",
        ]
        for key in PARAMETERS:
            value = getattr(self, key)
            lines.append(f"{key} = {'inf' if math.isinf(value) else repr(float(value))}")
        lines.append(f"dma_waits_stall = {'true' if self.dma_waits_stall else 'false'}")
        return "\n".join(lines) + "\n"


class EmulatorTiming(NamedTuple):
    """A model in the emulator's units (QPUSim.h's QpusimMemoryModel, field for field)."""

    dram_bytes_per_cycle: float
    dram_latency_cycles: float
    dma_load_bytes_per_cycle: float
    dma_load_setup_cycles: float
    dma_store_bytes_per_cycle: float
    dma_store_setup_cycles: float
    dma_waits_stall: bool


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_clock(clock_mhz: float) -> None:
    if not isinstance(clock_mhz, (int, float)) or not 1.0 <= clock_mhz <= 10000.0:
        raise MemoryModelError(f"the QPU clock must be 1..10000 MHz, not {clock_mhz!r}")


def _check(model: MemoryModel, source: str) -> None:
    """Every number valid: bandwidths > 0 (inf allowed), times finite and >= 0."""
    where = f"{source}: " if source else "memory model: "
    for key in PARAMETERS:
        value = getattr(model, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise MemoryModelError(f"{where}{key} = {value!r} is not a number")
        if key.endswith("_gbps") and not value > 0:
            raise MemoryModelError(f"{where}{key} = {value!r} must be > 0 GB/s (inf: unlimited)")
        if key.endswith("_ns") and not (math.isfinite(value) and value >= 0):
            raise MemoryModelError(f"{where}{key} = {value!r} must be a finite number of ns >= 0")
    if not isinstance(model.dma_waits_stall, bool):
        raise MemoryModelError(
            f"{where}dma_waits_stall = {model.dma_waits_stall!r} is not true/false"
        )


def from_mapping(values: Mapping[str, Any], source: str = "memory model") -> MemoryModel:
    """A model from a mapping (a parsed file); unknown or missing keys are errors naming them."""
    for key in values:
        if key not in (*PARAMETERS, *_STRINGS, *_IGNORED, "dma_waits_stall"):
            known = ", ".join((*PARAMETERS, "dma_waits_stall", *_STRINGS))
            raise MemoryModelError(f"{source}: unknown key {key!r} (known: {known})")
    missing = [key for key in PARAMETERS if key not in values]
    if missing:
        raise MemoryModelError(f"{source}: missing key {missing[0]!r}")
    for key in _STRINGS:
        if key in values and not isinstance(values[key], str):
            raise MemoryModelError(f"{source}: {key} must be a string")
    kwargs = {f.name: values[f.name] for f in fields(MemoryModel) if f.name in values}
    try:
        return MemoryModel(**kwargs)
    except MemoryModelError as err:
        raise MemoryModelError(str(err).replace("memory model: ", f"{source}: ", 1)) from None


def _parse_flat(text: str, source: str) -> dict[str, Any]:
    """The file's flat ``key = value`` TOML subset, for Pythons without tomllib (< 3.11)."""
    values: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not key:
            raise MemoryModelError(f"{where}: expected key = value")
        if value.startswith('"'):
            end = value.find('"', 1)
            if end < 0:
                raise MemoryModelError(f"{where}: {key}: unterminated string")
            values[key] = value[1:end]
            continue
        value = value.split("#", 1)[0].strip()
        if value in ("true", "false"):
            values[key] = value == "true"
            continue
        try:
            values[key] = float(value)
        except ValueError:
            raise MemoryModelError(f"{where}: {key} = {value!r} is not a number") from None
    return values


def load(path: str | os.PathLike[str] | None = None) -> MemoryModel:
    """Read a model file (default: the published-figures ``memory_model.toml``)."""
    file = Path(path) if path is not None else DEFAULT_PATH
    return from_mapping(_read(file), str(file))


def _read(file: Path) -> dict[str, Any]:
    """A model file's keys and values (tomllib, or the flat subset on Python < 3.11)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise MemoryModelError(f"{file}: cannot read the memory model ({err.strerror})") from None
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise MemoryModelError(f"{file}: not valid TOML ({err})") from None
        tables = [key for key, value in values.items() if isinstance(value, dict)]
        if tables:
            raise MemoryModelError(f"{file}: [{tables[0]}]: tables are not supported (flat keys)")
    else:
        values = _parse_flat(text, str(file))
    return values


def save(model: MemoryModel, path: str | os.PathLike[str]) -> None:
    """Write ``model`` as a flat TOML file ``load`` and QPUSIM_MEMORY_MODEL read."""
    Path(path).write_text(model.to_toml(), encoding="utf-8")


@functools.lru_cache(maxsize=1)
def default() -> MemoryModel:
    """The published-figures model (``memory_model.toml``; read once)."""
    return load(DEFAULT_PATH)


def free() -> MemoryModel:
    """The emulator's original timing at 250 MHz: 8-cycle (128 ns) line fills and 12-cycle
    (192 ns) DMAs whatever their size, no bandwidth limit or contention, QPULib's DMA waits
    skipped. At 250 MHz it reproduces the cycle counts of the unpatched timing exactly."""
    return MemoryModel(
        dram_bandwidth_gbps=math.inf,
        dram_latency_ns=128.0,
        dma_load_bandwidth_gbps=math.inf,
        dma_load_setup_ns=192.0,
        dma_store_bandwidth_gbps=math.inf,
        dma_store_setup_ns=192.0,
        dma_waits_stall=False,
        name="free",
        description="the emulator's original timing: memory costs (almost) nothing",
    )


CALIBRATED_ENV = "TORCH_QPU_MEMORY_MODEL"


def calibrated_path() -> Path:
    """Where the calibration of this Pi is kept: ``$TORCH_QPU_MEMORY_MODEL``, else
    ``$XDG_CONFIG_HOME/torch_qpu/memory_model.toml`` (``~/.config/...``), which
    ``python -m torch_qpu calibrate --save`` writes. ``auto`` reads it (calibrated_or_default)."""
    named = os.environ.get(CALIBRATED_ENV, "").strip()
    if named:
        return Path(named)
    config = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(config) / "torch_qpu" / "memory_model.toml"


_calibrated_cache: dict[tuple[str, float], MemoryModel] = {}
_warned_paths: list[str] = []


def calibrated_or_default() -> MemoryModel:
    """The calibrated model when its file exists (cached by path and mtime), else the
    published-figures default. A broken file warns once and the default is used: it only
    steers ``auto``'s choice, never a result."""
    path = calibrated_path()
    try:
        stamp = path.stat().st_mtime
    except OSError:
        if os.environ.get(CALIBRATED_ENV, "").strip() and str(path) not in _warned_paths:
            _warned_paths.append(str(path))
            warnings.warn(
                f"torch_qpu: {CALIBRATED_ENV}={path} does not exist; auto uses the "
                "published-figures memory model",
                RuntimeWarning,
                stacklevel=3,
            )
        return default()
    key = (str(path), stamp)
    if key not in _calibrated_cache:
        try:
            _calibrated_cache[key] = load(path)
        except MemoryModelError as err:
            if str(path) not in _warned_paths:
                _warned_paths.append(str(path))
                warnings.warn(
                    f"torch_qpu: {err}; auto uses the published-figures memory model",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return default()
    return _calibrated_cache[key]


def scaled(model: MemoryModel, **changes: float) -> MemoryModel:
    """A copy with some parameters changed (a what-if: e.g. twice the DRAM bandwidth)."""
    return replace(model, **changes)


# The model the qpusim backend uses, as (model, clock); QPUSIM_MEMORY_MODEL may set the
# initial one in the C++ library, which this module then mirrors.
_lock = threading.Lock()
_current: tuple[MemoryModel, float] | None = None


def _initial() -> tuple[MemoryModel, float]:
    """What the emulator library starts with: QPUSIM_MEMORY_MODEL's file at the file's
    clock_mhz, else QPUSIM_CLOCK_MHZ, else 250 MHz (as QPUSim.cpp reads them); else free."""
    path = os.environ.get("QPUSIM_MEMORY_MODEL", "")
    if not path:
        return free(), DEFAULT_CLOCK_MHZ
    values = _read(Path(path))
    clock = values.get("clock_mhz", os.environ.get("QPUSIM_CLOCK_MHZ", "") or DEFAULT_CLOCK_MHZ)
    try:
        clock = float(clock)
    except ValueError:
        raise MemoryModelError(f"QPUSIM_CLOCK_MHZ={clock!r} is not a number") from None
    _check_clock(clock)
    return from_mapping(values, path), clock


def current() -> tuple[MemoryModel, float]:
    """The model the qpusim backend uses now and the clock it was converted at."""
    global _current
    with _lock:
        if _current is None:
            _current = _initial()
        return _current


def set(model: MemoryModel, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> None:
    """Use ``model`` at ``clock_mhz`` for the qpusim backend's following launches."""
    global _current
    if not isinstance(model, MemoryModel):
        raise TypeError(
            f"expected a torch_qpu.memory_model.MemoryModel, not {type(model).__name__}"
        )
    timing = model.to_cycles(clock_mhz)
    from ._backend import extension

    ext = extension()
    if not hasattr(ext, "_qpusim_set_memory_model") or ext.mode != "qpusim":
        from ._backend import BackendUnavailableError

        raise BackendUnavailableError(
            "the memory model is the qpusim backend's: this torch_qpu is a "
            f"{ext.mode or 'cpu-only'} build (build it with QPULIB_MODE=qpusim; README)"
        )
    with _lock:
        ext._qpusim_set_memory_model(list(timing[:6]), timing.dma_waits_stall)
        _current = (model, float(clock_mhz))


@contextmanager
def use(model: MemoryModel, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> Iterator[MemoryModel]:
    """``with use(model, clock_mhz=400): ...``: the model inside the block, the old one after."""
    old_model, old_clock = current()
    set(model, clock_mhz)
    try:
        yield model
    finally:
        set(old_model, old_clock)

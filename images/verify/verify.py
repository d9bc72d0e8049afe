"""Smoke-test an image from inside, under QEMU as the Pi's own core (rpibuild's verify stage).

Runs with the image's own python; stdlib only (and rpibuild's ELF reader, elf.py, beside it)
except for what it checks. Exit code 0 means
every check passed; the JSON report is copied into the runtime image.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import elf  # rpibuild/export/elf.py, copied beside this file (/opt/rpibuild/elf.py)

# Native code the image ships, checked against the target ABI.
ELF_GLOBS = (
    "/usr/local/lib/libqpu.so*",
    "/opt/rpibuild/venv/lib/python3*/site-packages/torch_qpu/**/*.so",
    "/opt/rpibuild/venv/lib/python3*/site-packages/torch/lib/*.so*",
)


def check_machine(expected: str) -> dict[str, object]:
    machine = platform.machine()
    if machine != expected:
        raise SystemExit(f"verify: machine is {machine}, expected {expected}")
    return {"machine": machine, "qemu_cpu": os.environ.get("QEMU_CPU", "")}


def check_elf(spec: str) -> dict[str, object]:
    """Every shipped .so matches the target (``MACHINE:CLASS[:hf]``): ELF machine, class,
    hard-float, and no glibc symbol version newer than the image's."""
    libc = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 0"
    have = tuple(int(p) for p in libc.split()[-1].split("."))
    files = sorted(
        {p for pattern in ELF_GLOBS for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)}
    )
    newest: tuple[int, ...] = ()
    for path in files:
        with open(path, "rb") as stream:
            header = elf.stream_header(stream)
            if header is None:
                continue
            problem = elf.spec_mismatch(header, spec)
            if problem:
                raise SystemExit(f"verify: {path}: {problem}")
            needed = elf.glibc_versions(stream, header)
            if needed and max(needed) > have:
                want = ".".join(map(str, max(needed)))
                raise SystemExit(f"verify: {path} needs GLIBC_{want}, the image has {libc}")
            newest = max([newest, *needed])
    return {
        "elf_files": len(files),
        "glibc": libc,
        "newest_glibc_needed": ".".join(map(str, newest)) if newest else None,
    }


def check_requirements() -> dict[str, object]:
    """pip check: every installed distribution's requirements are met (in a cross build, torch
    and its dependencies were installed by the build platform's pip, not this one)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit("verify: pip check: " + (result.stdout + result.stderr).strip())
    return {"requirements": "consistent"}


def check_torch() -> dict[str, object]:
    import torch

    torch.manual_seed(0)
    a, b = torch.randn(64, 48), torch.randn(48, 32)
    expect = sum(a[0, k].item() * b[k, 0].item() for k in range(48))
    got = (a @ b)[0, 0].item()
    if abs(got - expect) > 1e-3:
        raise SystemExit(f"verify: torch matmul gave {got}, expected {expect}")
    conv = torch.nn.Conv2d(3, 4, 3)(torch.randn(1, 3, 8, 8))
    linear = torch.nn.Linear(32, 8)(torch.randn(5, 32))
    if conv.shape != (1, 4, 6, 6) or linear.shape != (5, 8):
        raise SystemExit("verify: torch conv2d/linear gave wrong shapes")
    return {"torch": torch.__version__}


def check_extension() -> dict[str, object]:
    import torch
    import torch_qpu

    torch.manual_seed(1)
    x, y = torch.randn(100), torch.randn(100)
    m, v = torch.randn(7, 100), torch.randn(100)
    results = {}
    for backend in torch_qpu.available_backends():
        if backend == "qpu":
            continue  # needs a real Pi; `python -m torch_qpu doctor` says why
        x_before = x.clone()
        checks = {
            "add": (torch_qpu.add(x, y, backend=backend), x + y),
            "mul": (torch_qpu.mul(x, y, backend=backend), x * y),
            "mv": (torch_qpu.mv(m, v, backend=backend), m @ v),
        }
        for name, (got, want) in checks.items():
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
                raise SystemExit(f"verify: torch_qpu.{name} on {backend} differs from torch")
        if not torch.equal(x, x_before):
            raise SystemExit(f"verify: torch_qpu modified its input on {backend}")
        results[backend] = "ok"
    return {"torch_qpu": getattr(torch_qpu, "__version__", "?"), "backends": results}


def check_op_sweep(script: str) -> dict[str, object]:
    """Run the op sweep (op_sweep.py, beside this file in the image): every op case in its own
    process as the Pi's core, so an instruction the Pi lacks in one code path (a BLAS kernel,
    an allocator) fails the build with the op and the signal named. Its report goes into
    verify's report; skipped cases (no quantized engine) do not fail the build."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "op_sweep.json")
        code = subprocess.call([sys.executable, script, "--report", path], stdout=subprocess.DEVNULL)
        try:
            with open(path, encoding="utf-8") as stream:
                sweep = json.load(stream)
        except (OSError, ValueError):
            raise SystemExit(f"verify: the op sweep wrote no report (exit {code})") from None
    if code != 0 or sweep.get("failed"):
        cases = {c["name"]: c for c in sweep.get("cases", [])}
        failed = [
            f"{name} ({cases[name].get('signal') or cases[name].get('message', '')})"
            for name in sweep.get("failed", [])
            if name in cases
        ]
        raise SystemExit(f"verify: op sweep failed (exit {code}): " + ("; ".join(failed) or "no case report"))
    return {"op_sweep": sweep}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--machine", required=True, help="expected `uname -m`")
    parser.add_argument("--torch", action="store_true", help="check torch")
    parser.add_argument("--extension", action="store_true", help="check torch_qpu")
    parser.add_argument(
        "--op-sweep",
        action="store_true",
        help="run torch's op sweep (op_sweep.py beside this file), each op in its own process",
    )
    parser.add_argument("--emulator-tests", metavar="DIR", help="run the extension's tests")
    parser.add_argument("--elf", metavar="MACHINE:CLASS[:hf]", help="check shipped .so files' ABI")
    parser.add_argument(
        "--merge", metavar="REPORT", help="an earlier stage's report (verify-torch's) to carry into this one"
    )
    parser.add_argument("--report", required=True, help="where to write the JSON report")
    args = parser.parse_args()

    started = time.monotonic()
    report: dict[str, object] = {"python": sys.version.split()[0]}
    if args.merge:
        with open(args.merge, encoding="utf-8") as earlier:
            carried = json.load(earlier)
        if "seconds" in carried:
            carried["torch_seconds"] = carried.pop("seconds")
        report.update(carried)
    report.update(check_machine(args.machine))
    if args.elf:
        report.update(check_elf(args.elf))
    report.update(check_requirements())
    if args.torch:
        report.update(check_torch())
    if args.op_sweep:
        report.update(check_op_sweep(os.path.join(os.path.dirname(os.path.abspath(__file__)), "op_sweep.py")))
    if args.extension:
        report.update(check_extension())
    if args.emulator_tests:
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", args.emulator_tests]
        )
        if code != 0:
            raise SystemExit(f"verify: extension tests failed (exit {code})")
        report["emulator_tests"] = "passed"
    report["seconds"] = round(time.monotonic() - started, 1)
    with open(args.report, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2, sort_keys=True)
    print("verify:", json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

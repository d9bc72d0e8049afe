"""Smoke-test an image from inside, under QEMU as the Pi's own core (rpibuild's verify stage).

Runs with the image's own python; stdlib only except for what it checks. Exit code 0 means
every check passed; the JSON report is copied into the runtime image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def check_machine(expected: str) -> dict[str, object]:
    machine = platform.machine()
    if machine != expected:
        raise SystemExit(f"verify: machine is {machine}, expected {expected}")
    return {"machine": machine, "qemu_cpu": os.environ.get("QEMU_CPU", "")}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--machine", required=True, help="expected `uname -m`")
    parser.add_argument("--torch", action="store_true", help="check torch")
    parser.add_argument("--extension", action="store_true", help="check torch_qpu")
    parser.add_argument("--emulator-tests", metavar="DIR", help="run the extension's tests")
    parser.add_argument("--report", required=True, help="where to write the JSON report")
    args = parser.parse_args()

    started = time.monotonic()
    report: dict[str, object] = {"python": sys.version.split()[0]}
    report.update(check_machine(args.machine))
    if args.torch:
        report.update(check_torch())
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

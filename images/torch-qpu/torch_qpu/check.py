"""``python -m torch_qpu.check``: every op on one backend against torch.

Meant for a Pi after installing an image: random tensors of awkward sizes
(not multiples of 16, bigger than one QPU's share, ...), the maximum error
per op is printed, and the exit status is 1 when any result is outside the
float32 tolerance (2 when the backend cannot run).
"""

from __future__ import annotations

import argparse
import sys

import torch

from . import _backend, ops


def default_backend() -> str:
    """The fastest backend that runs the QPULib kernels here, else cpu."""
    return _backend.available_backends()[0]


def cases(gen: torch.Generator):
    """(label, backend call, reference, error scale) tuples."""

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    for n in (1, 17, 1000, 65_537):
        a, b = rand(n), rand(n)
        for name in ("add", "sub", "mul"):
            ref = getattr(torch, name)(a, b)
            op = getattr(ops, name)
            yield (
                f"{name} {n}",
                lambda be, f=op, a=a, b=b: f(a, b, backend=be),
                ref,
                ref.abs() + 1.0,
            )
    for h, w in ((1, 1), (100, 100), (100, 10_000), (33, 4099)):
        m, v = rand(h, w), rand(w)
        yield (
            f"mv {h}x{w}",
            lambda be, m=m, v=v: ops.mv(m, v, backend=be),
            m @ v,
            m.abs() @ v.abs(),
        )
    for mm_m, k, n in ((5, 7, 3), (64, 64, 64), (31, 129, 17)):
        a, b = rand(mm_m, k), rand(k, n)
        yield (
            f"mm {mm_m}x{k}x{n}",
            lambda be, a=a, b=b: ops.mm(a, b, backend=be),
            a @ b,
            a.abs() @ b.abs(),
        )
    x, weight, bias = rand(8, 300), rand(40, 300), rand(40)
    yield (
        "linear 8x300->40",
        lambda be: ops.linear(x, weight, bias, backend=be),
        torch.nn.functional.linear(x, weight, bias),
        x.abs() @ weight.abs().t() + bias.abs(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torch_qpu.check", description=__doc__)
    parser.add_argument(
        "--backend", default=None, help="backend to check (default: fastest available)"
    )
    parser.add_argument("--num-qpus", type=int, default=None, help="QPUs per kernel (1-12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-5,
        help="allowed error relative to sum |a_i b_i| (default 1e-5)",
    )
    args = parser.parse_args(argv)
    backend = args.backend or default_backend()
    try:
        _backend.resolve(backend, 0)
        if args.num_qpus is not None:
            _backend.set_num_qpus(args.num_qpus)
    except (ValueError, TypeError, _backend.BackendUnavailableError) as err:
        print(f"torch_qpu check: {err}", file=sys.stderr)
        return 2
    print(f"torch_qpu check: backend {backend}, {_backend.get_num_qpus()} QPUs, seed {args.seed}")
    print(f"{'op':>20}  {'max error':>12}  {'allowed':>12}  result")
    failures = 0
    with torch.no_grad():
        for label, call, expected, scale in cases(torch.Generator().manual_seed(args.seed)):
            result = call(backend)
            error = (result - expected).abs()
            allowed = args.rtol * scale + 1e-6
            ok = result.shape == expected.shape and bool((error <= allowed).all())
            failures += not ok
            print(
                f"{label:>20}  {error.max().item():12.3e}  {allowed.max().item():12.3e}  "
                f"{'ok' if ok else 'MISMATCH'}"
            )
    print("all ops match torch" if not failures else f"{failures} op(s) MISMATCH")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark putting the torch wheel into the target image: build platform (cross) vs QEMU.

With ``build.cross: true`` the build platform's pip and CPython install the wheel and its
dependencies into an overlay of the target's venv (stage torch-install,
images/cross/target_site.py) and the target stage only copies it and imports torch under
QEMU; with ``false`` the target's pip does everything under QEMU. Each mode builds up to the
torch stage with BuildKit's cache off (downloads stay in the pip cache mount, so the figures
are unpacking, byte-compiling and importing, not the network), and prints both modes' torch
stages side by side with the ratio. Figures only, no assertions.

    python3 benchmarks/torch_install.py [-p PROFILE] [--set FIELD=VALUE ...] [--only cross|qemu]
"""

from __future__ import annotations

import argparse
import sys

from rpibuild.build.pipeline import BuildOutcome, build_profile
from rpibuild.config import load_profile
from rpibuild.engine import DockerEngine, Engine

TORCH_STAGES = {"cross": ("torch-install", "torch"), "qemu": ("torch",)}


def measure(engine: Engine, profile_name: str, overrides: list[str], mode: str) -> BuildOutcome:
    cross = "true" if mode == "cross" else "false"
    settings = [
        *overrides,
        f"build.cross={cross}",
        # Its own image repository: the benchmark never moves the profile's own tags.
        f"image.repository=rpibuild-benchmark/{profile_name}",
    ]
    profile = load_profile(profile_name, settings).profile
    print(f"[{mode}] building up to the torch stage, cache off", file=sys.stderr)
    return build_profile(profile, engine, target="torch", no_cache=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-p", "--profile", default="pi3b-arm64")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--only", choices=("cross", "qemu"), help="measure one mode only")
    args = parser.parse_args()
    engine = DockerEngine.connect()
    modes = [args.only] if args.only else ["cross", "qemu"]
    results = {mode: measure(engine, args.profile, args.overrides, mode) for mode in modes}

    torch = load_profile(args.profile, args.overrides).profile.torch
    print(f"\nprofile {args.profile}, torch {torch.source} {torch.version or ''}")
    print(f"{'stage':<16}" + "".join(f"{mode:>12}" for mode in modes))
    names = list(dict.fromkeys(s.name for mode in modes for s in results[mode].stages))
    for name in names:
        row = f"{name:<16}"
        for mode in modes:
            stage = next((s for s in results[mode].stages if s.name == name), None)
            row += f"{'-':>12}" if stage is None else f"{stage.seconds:>11.1f}s"
        print(row)
    totals = {
        mode: sum(s.seconds for s in results[mode].stages if s.name in TORCH_STAGES[mode]) for mode in modes
    }
    print(f"{'torch, total':<16}" + "".join(f"{totals[mode]:>11.1f}s" for mode in modes))
    print(f"{'build (wall)':<16}" + "".join(f"{results[mode].seconds:>11.1f}s" for mode in modes))
    if len(modes) == 2 and totals["cross"]:
        print(f"\ninstalling torch: QEMU / cross = {totals['qemu'] / totals['cross']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

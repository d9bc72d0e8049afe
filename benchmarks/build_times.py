"""Benchmark the build pipeline: cross against QEMU, cold, no-change and extension-edit rebuilds.

Per mode, ``build.cross: true`` (C++ compiled natively with Debian's cross toolchain, QEMU
runs only the target's steps) and ``false`` (everything under QEMU), three builds on private
copies of QPULib and the extension: a cold C++ build (a new line in every QPULib and
extension source file, so neither BuildKit's layers nor ccache can skip a compile), a
no-change rebuild, and a rebuild after an edit of the extension's C++. The stages before
QPULib (system, torch) stay cached after each mode's first build: the figures are
the C++ stages and what follows them. Prints per-stage seconds side by side and the C++
stages' QEMU/cross ratios. Figures only, no assertions; goals are in issue 12 and the README.

    python3 benchmarks/build_times.py [-p PROFILE] [--set FIELD=VALUE ...] [--only cross|qemu]

QPULib comes from RPIBUILD_QPULIB_SRC or the profile's pinned source (RPIBUILD_SOURCE_MIRROR
where GitHub is out of reach).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rpibuild import resources
from rpibuild.build.context import fetch_sources
from rpibuild.build.pipeline import BuildOutcome, build_profile
from rpibuild.config import load_profile
from rpibuild.engine import DockerEngine, Engine

# A C++ stage's time in each mode: cross compiles in *-build stages and installs in the target
# stage; under QEMU the target stage does both. Each row sums the stages of one concern.
CONCERNS = {
    "QPULib (C++)": {"cross": ("qpulib-build", "qpulib"), "qemu": ("qpulib",)},
    "extension (C++)": {"cross": ("extension-build", "extension"), "qemu": ("extension",)},
}


def run(engine: Engine, profile_name: str, overrides: list[str], **kwargs: bool) -> BuildOutcome:
    profile = load_profile(profile_name, overrides).profile
    return build_profile(profile, engine, **kwargs)


def seconds(outcome: BuildOutcome, names: tuple[str, ...]) -> float:
    return sum(s.seconds for s in outcome.stages if s.name in names)


def edit(source: Path, token: str) -> None:
    """A change to the compiled code itself (a comment would be a ccache hit)."""
    source.write_text(
        source.read_text() + f"\nnamespace {{ [[maybe_unused]] constexpr int rpibuild_bench_{token} = 1; }}\n"
    )


def measure(engine: Engine, profile: str, overrides: list[str], trees: tuple[Path, Path], mode: str) -> dict:
    qpulib, extension = trees
    cross = "true" if mode == "cross" else "false"
    # Its own image repository: the benchmark never moves the profile's own tags.
    settings = [
        *overrides,
        f"build.cross={cross}",
        f"extension.path={extension}",
        f"qpulib.path={qpulib}",
        f"image.repository=rpibuild-benchmark/{profile}",
    ]
    token = f"{mode}_{time.time_ns()}"
    for source in [*sorted((qpulib / "Lib").rglob("*.cpp")), extension / "csrc" / "module.cpp"]:
        edit(source, f"cold_{token}")
    print(f"[{mode}] cold C++ build (every source file changed)", file=sys.stderr)
    cold = run(engine, profile, settings)
    print(f"[{mode}] no-change rebuild", file=sys.stderr)
    same = run(engine, profile, settings)
    edit(extension / "csrc" / "module.cpp", f"edit_{token}")
    print(f"[{mode}] rebuild after an edit of the extension's C++", file=sys.stderr)
    edited = run(engine, profile, settings)
    return {"cold": cold, "no-change": same, "extension-edit": edited}


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

    results: dict[str, dict[str, BuildOutcome]] = {}
    with tempfile.TemporaryDirectory(prefix="rpibuild-bench-") as tmp:
        extension = Path(tmp) / "torch-qpu"
        shutil.copytree(
            resources.images_dir() / "torch-qpu",
            extension,
            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
        )
        qpulib = Path(tmp) / "QPULib"
        shutil.copytree(fetch_sources(load_profile(args.profile, args.overrides).profile).qpulib, qpulib)
        print(f"profile {args.profile}, overrides {args.overrides or 'none'}", file=sys.stderr)
        for mode in modes:
            results[mode] = measure(engine, args.profile, args.overrides, (qpulib, extension), mode)

    columns = [(mode, kind) for mode in modes for kind in ("cold", "no-change", "extension-edit")]
    names = list(dict.fromkeys(s.name for mode in modes for s in results[mode]["cold"].stages))
    print(f"\n{'stage':<16}" + "".join(f"{m + ' ' + k:>22}" for m, k in columns))
    for name in names:
        row = f"{name:<16}"
        for mode, kind in columns:
            stage = next((s for s in results[mode][kind].stages if s.name == name), None)
            row += f"{'-':>22}" if stage is None else f"{stage.seconds:>20.1f}s{'*' if stage.cached else ' '}"
        print(row)
    print(f"{'total (wall)':<16}" + "".join(f"{results[m][k].seconds:>21.1f}s" for m, k in columns))
    print("(* = every step from the cache; base images, system and torch layers reused)")

    if len(modes) == 2:
        print(f"\n{'C++ stage (cold)':<20}{'cross':>10}{'QEMU':>10}{'QEMU/cross':>12}")
        for concern, stages in CONCERNS.items():
            fast = seconds(results["cross"]["cold"], stages["cross"])
            slow = seconds(results["qemu"]["cold"], stages["qemu"])
            ratio = f"{slow / fast:>11.1f}x" if fast else f"{'-':>12}"
            print(f"{concern:<20}{fast:>9.1f}s{slow:>9.1f}s{ratio}")
        for kind in ("extension-edit", "no-change"):
            fast, slow = results["cross"][kind].seconds, results["qemu"][kind].seconds
            print(f"{kind + ' rebuild':<20}{fast:>9.1f}s{slow:>9.1f}s{slow / fast:>11.1f}x")
    image = engine.image(results[modes[0]]["extension-edit"].id)
    if image is not None:
        print(f"\nruntime image: {image.size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the build pipeline: cold, no-change and extension-only rebuilds, image sizes.

Prints per-stage seconds for the three builds side by side, and the runtime image's size
next to the same image with build tools kept. Figures only, no assertions.

    python3 benchmarks/build_times.py [-p PROFILE] [--set FIELD=VALUE ...] [--refresh-base]

Without RPIBUILD_QPULIB_SRC, pass --set qpulib.enabled=false where QPULib's upstream is
unreachable. The cold build uses --no-cache (the base image is reused unless --refresh-base).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from rpibuild import resources
from rpibuild.build import BuildOutcome, build_profile
from rpibuild.config import load_profile
from rpibuild.engine import DockerEngine, Engine


def run(engine: Engine, profile_name: str, overrides: list[str], **kwargs: bool) -> BuildOutcome:
    profile = load_profile(profile_name, overrides).profile
    return build_profile(profile, engine, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-p", "--profile", default="pi3b-arm64")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--refresh-base", action="store_true")
    args = parser.parse_args()
    engine = DockerEngine.connect()

    with tempfile.TemporaryDirectory(prefix="rpibuild-bench-") as tmp:
        extension = Path(tmp) / "torch-qpu"
        shutil.copytree(
            resources.images_dir() / "torch-qpu",
            extension,
            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
        )
        overrides = [*args.overrides, f"extension.path={extension}"]
        print(f"profile {args.profile}, overrides {args.overrides or 'none'}", file=sys.stderr)
        cold = run(engine, args.profile, overrides, no_cache=True, refresh_base=args.refresh_base)
        same = run(engine, args.profile, overrides)
        init = extension / "torch_qpu" / "__init__.py"
        init.write_text(init.read_text() + "\n# benchmark edit\n")
        edited = run(engine, args.profile, overrides)
        tools = run(
            engine,
            args.profile,
            [*overrides, "image.keep_build_tools=true", "image.tags=['{profile}-build-tools']"],
        )

    builds = {"cold": cold, "no-change": same, "extension-edit": edited}
    names = [s.name for s in cold.stages]
    print(f"\n{'stage':<12}" + "".join(f"{k:>16}" for k in builds))
    if not cold.base.cached:
        print(f"{'base':<12}{cold.seconds - sum(s.seconds for s in cold.stages):>15.1f}s" + " " * 32)
    for name in names:
        row = f"{name:<12}"
        for outcome in builds.values():
            stage = next(s for s in outcome.stages if s.name == name)
            row += f"{stage.seconds:>14.1f}s{'*' if stage.cached else ' '}"
        print(row)
    print(f"{'total':<12}" + "".join(f"{o.seconds:>15.1f}s" for o in builds.values()))
    print("(* = every step from the cache)")
    print(
        f"\nno-change / cold: {same.seconds / cold.seconds:.3f}   "
        f"extension-edit / cold: {edited.seconds / cold.seconds:.3f}"
    )
    runtime, with_tools = engine.image(edited.id), engine.image(tools.id)
    assert runtime is not None and with_tools is not None
    mib = 2**20
    print(
        f"\nimage size: runtime {runtime.size / mib:.0f} MiB, with build tools "
        f"{with_tools.size / mib:.0f} MiB (runtime / build-tools = {runtime.size / with_tools.size:.2f})"
    )
    engine.remove_image(tools.tags[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())

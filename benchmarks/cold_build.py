"""Benchmark a cold build the way a new user meets it, against another revision's, side by side.

For this checkout and, with ``--baseline REV``, for rpibuild at REV (a temporary git worktree
of this repository), in turn: the engine's BuildKit cache pruned and every ``rpibuild/base``
image removed, a fresh rpibuild cache folder; then

  cold            ``rpibuild build -p PROFILE`` with nothing cached (bases bootstrapped)
  no-change       the same build again
  extension-edit  after an edit of the extension's C++ (a private copy, so ccache sees a change)

A profile whose torch wheel is compiled from source (pi3b-armv7) is measured without that
compile, as issue 25's goal reads: the wheel this checkout's key has in your rpibuild cache
(build the profile once first) is put into each fresh cache under the key that revision
asks for, as a team's wheel store would hand it over. Everything else starts cold.

Prints wall seconds per phase, the base bootstrap's share, and each stage's seconds, for both
revisions side by side with their ratio and the goals of issue 25 (cold <= 600 s, base
<= 120 s, extension edit <= 60 s, no change <= 5 s). Figures only, no assertions.

    python3 benchmarks/cold_build.py [-p PROFILE] [--baseline REV] [--set FIELD=VALUE ...]

It empties the engine's build cache and base images: run it on a host you can do that on.
QPULib comes from the profile's pinned source (RPIBUILD_SOURCE_MIRROR where GitHub is out
of reach).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOALS = {"cold": 600.0, "base": 120.0, "extension-edit": 60.0, "no-change": 5.0}
PHASES = ("cold", "no-change", "extension-edit")


def empty_the_engine() -> None:
    """What a fresh host has: no BuildKit cache, no bootstrapped base."""
    subprocess.run(["docker", "builder", "prune", "--all", "--force"], check=True, capture_output=True)
    listed = subprocess.run(
        ["docker", "images", "--format", "{{json .}}", "rpibuild/base"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in listed.splitlines():
        image = json.loads(line)
        ref = f"{image['Repository']}:{image['Tag']}"
        subprocess.run(["docker", "rmi", "--force", ref], check=True, capture_output=True)


def checkout_env(checkout: Path, cache: Path | None) -> dict[str, str]:
    """``checkout``'s rpibuild, with its own cache folder (None: the user's)."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "RPIBUILD_HOME": str(checkout)}
    if cache is not None:
        env["RPIBUILD_CACHE"] = str(cache)
    return env


def rpibuild_command(verb: str, profile: str, settings: list[str]) -> list[str]:
    """``rpibuild VERB -p PROFILE --json --set ...``, run by this interpreter."""
    return [
        sys.executable,
        "-m",
        "rpibuild",
        verb,
        "-p",
        profile,
        "--json",
        *(a for s in settings for a in ("--set", s)),
    ]


def plan(checkout: Path, profile: str, settings: list[str], cache: Path | None) -> dict[str, Any]:
    """``rpibuild plan --json`` of ``checkout``: its keys, and the wheel it would reuse."""
    command = rpibuild_command("plan", profile, settings)
    env = checkout_env(checkout, cache)
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"the plan of {checkout} failed (exit {result.returncode})")
    planned: dict[str, Any] = json.loads(result.stdout)
    return planned


def stored_wheel_folder(profile: str, settings: list[str]) -> Path | None:
    """The folder of the wheel this checkout's build of ``profile`` would reuse from the
    user's cache; None when the profile compiles no wheel. Exits when it compiles one and
    none is stored: the benchmark excludes the compile, it does not run it."""
    planned = plan(REPO, profile, settings, None)
    if "torch wheel" not in planned["keys"]:
        return None
    stored = planned["torch"].get("stored_wheel")
    if not stored:
        raise SystemExit(
            f"{profile} compiles its torch wheel and none is stored for this checkout's key "
            f"({planned['keys']['torch wheel']}): run `rpibuild build -p {profile}` once first"
        )
    return Path(stored).parent


def seed_wheel(checkout: Path, profile: str, settings: list[str], cache: Path, wheel: Path) -> None:
    """Put the stored wheel into ``cache`` under the key ``checkout`` asks for."""
    key = plan(checkout, profile, settings, cache)["keys"]["torch wheel"]
    shutil.copytree(wheel, cache / wheel.parent.name / key)  # the store: CACHE/torch/KEY
    print(f"[{checkout}] torch wheel from the store under key {key} (compile excluded)", file=sys.stderr)


def build(checkout: Path, profile: str, settings: list[str], cache: Path) -> dict[str, object]:
    """One ``rpibuild build --json`` of ``checkout``'s rpibuild; its summary plus wall seconds."""
    command = rpibuild_command("build", profile, settings)
    env = checkout_env(checkout, cache)
    started = time.monotonic()
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"the build of {checkout} failed (exit {result.returncode})")
    summary: dict[str, object] = json.loads(result.stdout)
    summary["wall"] = wall
    return summary


def edit(source: Path, token: str) -> None:
    """A change to the compiled code itself (a comment would be a ccache hit)."""
    text = source.read_text()
    source.write_text(
        text + f"\nnamespace {{ [[maybe_unused]] constexpr int rpibuild_bench_{token} = 1; }}\n"
    )


def measure(
    checkout: Path, profile: str, overrides: list[str], work: Path, wheel: Path | None
) -> dict[str, dict[str, object]]:
    extension = work / "torch-qpu"
    shutil.copytree(
        checkout / "images" / "torch-qpu",
        extension,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    # Its own image repository: the benchmark never moves the profile's own tags.
    settings = [*overrides, f"extension.path={extension}", f"image.repository=rpibuild-benchmark/{profile}"]
    cache = work / "cache"
    if wheel is not None:
        seed_wheel(checkout, profile, settings, cache, wheel)
    empty_the_engine()
    out = {}
    print(f"[{checkout}] cold build", file=sys.stderr)
    out["cold"] = build(checkout, profile, settings, cache)
    print(f"[{checkout}] no-change rebuild", file=sys.stderr)
    out["no-change"] = build(checkout, profile, settings, cache)
    edit(extension / "csrc" / "module.cpp", str(time.time_ns()))
    print(f"[{checkout}] rebuild after an edit of the extension's C++", file=sys.stderr)
    out["extension-edit"] = build(checkout, profile, settings, cache)
    return out


def base_seconds(summary: dict[str, object]) -> float:
    """The bootstrap's share: the "base" stage where the build reports one, else the wall time
    outside the build's own stages (older revisions bootstrapped before reporting any)."""
    stages = summary.get("stages") or []
    assert isinstance(stages, list)
    reported = [s["seconds"] for s in stages if s["name"] == "base"]
    if reported:
        return float(sum(reported))
    return float(summary["wall"]) - sum(float(s["seconds"]) for s in stages)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-p", "--profile", default="pi3b-arm64")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--baseline", metavar="REV", help="also measure rpibuild at this git revision")
    args = parser.parse_args()

    wheel = stored_wheel_folder(args.profile, args.overrides)
    runs: dict[str, dict[str, dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="rpibuild-cold-") as tmp:
        runs["this"] = measure(REPO, args.profile, args.overrides, Path(tmp, "this"), wheel)
        if args.baseline:
            tree = Path(tmp, "baseline-tree")
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline], check=True
            )
            try:
                runs[args.baseline] = measure(
                    tree, args.profile, args.overrides, Path(tmp, "baseline"), wheel
                )
            finally:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
                )

    names = list(runs)
    print(f"\nprofile {args.profile}, cold = engine build cache and bases emptied, fresh rpibuild cache")
    if wheel is not None:
        print(f"torch compile excluded: both paths were handed the stored wheel {wheel.name}")
    print(
        f"{'phase':<22}"
        + "".join(f"{n:>14}" for n in names)
        + (f"{'ratio':>9}" if len(names) == 2 else "")
        + f"{'goal':>9}"
    )

    def row(label: str, values: list[float], goal: float | None) -> None:
        line = f"{label:<22}" + "".join(f"{v:>13.1f}s" for v in values)
        if len(values) == 2:
            line += f"{values[1] / values[0]:>8.1f}x" if values[0] else f"{'-':>9}"
        print(line + (f"{goal:>8.0f}s" if goal else ""))

    for phase in PHASES:
        row(f"{phase} (wall)", [float(runs[n][phase]["wall"]) for n in names], GOALS[phase])
    row("cold: base bootstrap", [base_seconds(runs[n]["cold"]) for n in names], GOALS["base"])
    stage_names = list(
        dict.fromkeys(s["name"] for n in names for s in runs[n]["cold"]["stages"])  # type: ignore[union-attr]
    )
    print("\ncold build, per stage (s; where it ran in this checkout)")
    places = {s["name"]: s.get("place", "") for s in runs["this"]["cold"]["stages"]}  # type: ignore[union-attr]
    for stage in stage_names:
        values = []
        for n in names:
            found = [s for s in runs[n]["cold"]["stages"] if s["name"] == stage]  # type: ignore[union-attr]
            values.append(f"{found[0]['seconds']:>13.1f}s" if found else f"{'-':>14}")
        print(f"  {stage:<20}" + "".join(values) + f"   {places.get(stage, '')}")
    sizes = []
    for n in names:
        image = str(runs[n]["extension-edit"]["id"])
        inspect = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True
        )
        sizes.append(
            f"{int(inspect.stdout.strip()) / 2**20:>12.0f}MiB" if inspect.returncode == 0 else f"{'-':>15}"
        )
    print(f"{'runtime image size':<22}" + "".join(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the torch compile with distcc helpers: c10 with 0, 1 and 2 helpers, side by side.

Each run compiles torch's c10 library (the tests' stand-in for the wheel) through the compile
container rpibuild uses for the wheel (``compile_wheel(..., only="c10")``: the torch-compile
image, ccache, distcc through ccache's prefix), from a cold ccache and an empty build folder,
so every job is compiled somewhere. Helpers are containers of rpibuild's distcc-helper image on
this host's loopback; the jobs each ran are read from its own statistics (distccd --stats,
``dcc_compile_ok``), the rest ran in the compile container. Figures only, no assertions.

On one machine the helpers share its CPUs, so the seconds say what distcc costs here, not what
another machine's cores would bring; the jobs per helper say the work really went there.

A first, discarded compile warms the page cache (the image's files, the compiler): measured
here, whichever count ran first took twice as long (118 s against 54 s for the same run).

    python3 benchmarks/distcc_compile.py [--helpers 0,1,2] [--jobs-per-helper 2] [--no-warmup]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rpibuild.config import load_profile
from rpibuild.engine import DockerEngine
from rpibuild.torch_routes.compile_place import compile_place
from rpibuild.torch_routes.debian_compile import compile_wheel

SETTINGS = ["qpulib.enabled=false", "extension.enabled=false"]
FIRST_PORT = 36421  # helper n: jobs on FIRST_PORT + n, statistics on FIRST_PORT + 100 + n


def build_stage(target: str) -> str:
    args = [a for s in SETTINGS for a in ("--set", s)]
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild", "build", "-p", "pi3b-armv7", *args, "--target", target, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"building {target} failed:\n{result.stderr[-3000:]}")
    return str(json.loads(result.stdout)["id"])


def stats(port: int) -> int:
    """The jobs a helper compiled so far (its ``dcc_compile_ok``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    for line in data.decode("utf-8", "replace").splitlines():
        name, _, value = line.partition(" ")
        if name == "dcc_compile_ok":
            return int(value)
    return 0


def start_helpers(image: str, count: int, jobs: int) -> list[tuple[str, str, int]]:
    """(container, DISTCC_HOSTS entry, statistics port) of each helper started."""
    started = []
    for n in range(count):
        port, stats_port = FIRST_PORT + n, FIRST_PORT + 100 + n
        name = f"rpibuild-bench-distccd-{n}-{os.getpid()}"
        subprocess.run(
            ["docker", "run", "-d", "--name", name, "--network", "host", image,
             "--allow", "127.0.0.1", "--listen", "127.0.0.1",
             "--port", str(port), "--stats-port", str(stats_port), "--jobs", str(jobs)],
            check=True,
            capture_output=True,
        )  # fmt: skip
        started.append((name, f"127.0.0.1:{port}/{jobs}", stats_port))
    deadline = time.monotonic() + 30
    for _, _, stats_port in started:
        while True:
            try:
                stats(stats_port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("a distcc helper did not start")
                time.sleep(0.5)
    return started


def measure(image: str, helper_image: str, count: int, jobs: int) -> tuple[float, list[int], int]:
    """Seconds, jobs per helper, and the run's ninja steps for a cold c10 compile."""
    helpers = start_helpers(helper_image, count, jobs) if count else []
    try:
        with tempfile.TemporaryDirectory(prefix="rpibuild-bench-") as tmp:
            os.environ["RPIBUILD_CACHE"] = str(Path(tmp) / "cache")  # a cold ccache
            profile = load_profile("pi3b-armv7", SETTINGS).profile
            env = {"RPIBUILD_DISTCC_HOSTS": " ".join(spec for _, spec, _ in helpers)}
            place = compile_place(DockerEngine.connect(), profile, env=env)
            before = [stats(port) for _, _, port in helpers]
            steps = 0

            def on_line(line: str) -> None:
                nonlocal steps
                if line.startswith("[rpibuild-ninja "):
                    steps += 1

            print(f"[{count} helper(s)] {place.describe()}", file=sys.stderr)
            started = time.monotonic()
            code = compile_wheel(
                place, image, profile, Path(tmp) / "out", key="bench", fresh=True, on_line=on_line, only="c10"
            )
            seconds = time.monotonic() - started
            if code != 0:
                sys.exit(f"the compile with {count} helper(s) failed (exit code {code})")
            return seconds, [stats(port) - b for (_, _, port), b in zip(helpers, before, strict=True)], steps
    finally:
        for name, _, _ in helpers:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--helpers", default="0,1,2", help="helper counts to measure, comma-separated")
    parser.add_argument("--jobs-per-helper", type=int, default=2)
    parser.add_argument("--no-warmup", action="store_true", help="skip the discarded first compile")
    args = parser.parse_args()
    counts = [int(n) for n in args.helpers.split(",")]
    image, helper_image = build_stage("torch-compile"), build_stage("distcc-helper")
    if not args.no_warmup:
        print("warm-up compile (not counted)", file=sys.stderr)
        measure(image, helper_image, 0, args.jobs_per_helper)
    results = {n: measure(image, helper_image, n, args.jobs_per_helper) for n in counts}
    base = results[counts[0]][0]
    print(f"\nc10 (torch 2.6.0+dfsg-7, armhf), cold ccache, {os.cpu_count()} CPUs on this host")
    print(f"{'helpers':<8}{'seconds':>10}{'speed-up':>10}{'ninja steps':>13}  jobs per helper (distccd's)")
    for n in counts:
        seconds, jobs, steps = results[n]
        print(f"{n:<8}{seconds:>9.1f}s{base / seconds:>9.2f}x{steps:>13}  {', '.join(map(str, jobs)) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

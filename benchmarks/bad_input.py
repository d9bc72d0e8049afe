"""How fast hostile profiles are refused: time and peak memory of loading each one.

The unit tests prove each is stopped by a limit with a located error; this prints what that
costs (figures only, no assertions). Cases come from the test corpus.

    python3 benchmarks/bad_input.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rpibuild.config import load_profile
from rpibuild.errors import ConfigError
from tests.unit.test_hostile_input import CORPUS

CASES = ("yaml-alias-bomb", "yaml-5MB", "yaml-deep-nesting", "yaml-deep-flow-mapping", "extends-chain-40")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    load_profile("pi3b-arm64", env={})  # imports and first use are not the input's cost
    started = time.perf_counter()
    load_profile("pi3b-arm64", env={})
    good = time.perf_counter() - started
    print(f"{'case':<26}{'best ms':>10}{'peak MiB':>10}{'x a good profile':>18}")
    print(f"{'(pi3b-arm64, valid)':<26}{good * 1000:>10.1f}{'':>10}{1.0:>18.1f}")
    for name in CASES:
        case = next(c for c in CORPUS if c.id == name)
        with tempfile.TemporaryDirectory() as tmp:
            for file, content in case.files.items():
                (Path(tmp) / file).write_text(content, encoding="utf-8")
            profile = case.args[case.args.index("-p") + 1].replace("{dir}", tmp)
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                with contextlib.suppress(ConfigError):
                    load_profile(profile, env={})
                best = min(best, time.perf_counter() - started)
            tracemalloc.start()  # a run of its own: tracing slows the loader down
            with contextlib.suppress(ConfigError):
                load_profile(profile, env={})
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        print(f"{name:<26}{best * 1000:>10.1f}{peak:>10.1f}{best / good:>18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

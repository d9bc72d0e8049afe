"""Run the op sweep (images/verify/op_sweep.py) for a list of official torch aarch64 wheels,
each in an arm64 Debian trixie container (Python 3.13) under QEMU as a Pi's core, and print
a table: version, each case's status, verdict.

Why: the arm64 profiles pin torch to the newest official wheel that runs on a Cortex-A53 in
every op the sweep covers; upstream wheels have shipped ARMv8.1+ instructions that only one
code path reaches (2.4.0 in BLAS, 2.10.0 at import). This finds that pin again when upstream
releases a new wheel.

    python3 benchmarks/torch_sweep.py [--versions 2.6.0,2.9.1] [--since 2.6.0] [--cpu cortex-a53] [--json]

Without --versions, every torch release on the package index with a cp313 manylinux aarch64
wheel from --since on, read from the index's PEP 691 JSON page (--index-url, else
PIP_INDEX_URL, else the index pip is configured with). Wheels are downloaded on the host, checked
against the index's sha256 and kept in rpibuild's cache folder, then unpacked on the host with
torch's pure-Python dependencies (the host's pip for the target platform, whose cache keeps
them), so a rerun downloads nothing and QEMU runs only the sweep. The dependencies leave out
CUDA and triton (2.11+ aarch64 wheels on PyPI name NVIDIA's CUDA wheels, several GB that a
Pi cannot use); the sweep then shows whether the wheel imports without them.

Lives in benchmarks/ beside build_times.py: a Python program on top of rpibuild's engine that
prints figures for the README, not a host shell helper (scripts/).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import email.parser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from rpibuild.build.sources import file_sha256

HERE = Path(__file__).resolve().parent
OP_SWEEP = HERE.parent / "images" / "verify" / "op_sweep.py"
# The container: trixie's Python 3.13, the shipped arm64 profile's platform.
PROFILE = "pi3b-arm64"
PROFILE_OVERRIDES = (
    "base.bootstrap.suite=trixie",
    "base.bootstrap.packages=[ca-certificates, python3, python3-venv]",
)
PYTHON_TAG = "cp313"
TARGET_PYTHON = "3.13"
CPUS = ("cortex-a53", "cortex-a72", "cortex-a57", "max")
# torch's dependencies a Pi cannot use (CUDA, triton): not installed.
UNUSABLE_DEPENDENCIES = r"(nvidia|cuda|triton)"
WHEEL_NAME = re.compile(
    r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?"
    r"-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl$"
)
RELEASE = re.compile(r"^(\d+)(?:\.(\d+))*$")


@dataclass(frozen=True)
class Wheel:
    """One wheel file on the index."""

    filename: str
    url: str
    sha256: str
    yanked: bool = False

    @property
    def version(self) -> str:
        match = WHEEL_NAME.match(self.filename)
        return match["version"] if match else ""


# ---------------------------------------------------------------- choosing the wheels (pure)


def release_key(version: str) -> tuple[int, ...] | None:
    """(2, 9, 1) for a final release; None for pre-releases, dev and local versions (+cpu)."""
    if not RELEASE.match(version):
        return None
    return tuple(int(part) for part in version.split("."))


def matching_wheel(filename: str, python_tag: str = PYTHON_TAG, arch: str = "aarch64") -> bool:
    """A CPython wheel for ``python_tag`` (its own ABI, not abi3 or the free-threaded one)
    and a manylinux ``arch`` platform."""
    match = WHEEL_NAME.match(filename)
    if not match:
        return False
    platforms = match["platform"].split(".")
    return (
        match["python"] == python_tag
        and match["abi"] == python_tag
        and any(p.startswith("manylinux") and p.endswith("_" + arch) for p in platforms)
    )


def select_wheels(
    wheels: Iterable[Wheel],
    since: str = "2.6.0",
    python_tag: str = PYTHON_TAG,
    versions: Sequence[str] | None = None,
) -> list[Wheel]:
    """One wheel per final release from ``since`` on (or exactly ``versions``), oldest first.
    Yanked files are left out; a version given in ``versions`` that has no wheel is an error."""
    floor = release_key(since)
    if floor is None:
        raise ValueError(f"--since must be a release like 2.6.0, got {since!r}")
    chosen: dict[str, Wheel] = {}
    for wheel in wheels:
        key = release_key(wheel.version)
        if wheel.yanked or key is None or not matching_wheel(wheel.filename, python_tag):
            continue
        if versions is not None and wheel.version not in versions:
            continue
        if versions is None and key < floor:
            continue
        # Several manylinux tags for one version: the lowest glibc (first by name) is enough.
        if wheel.version not in chosen or wheel.filename < chosen[wheel.version].filename:
            chosen[wheel.version] = wheel
    if versions is not None:
        missing = [v for v in versions if v not in chosen]
        if missing:
            raise ValueError(f"no {python_tag} manylinux aarch64 wheel on the index for {', '.join(missing)}")
    return sorted(chosen.values(), key=lambda w: release_key(w.version) or ())


def wheels_from_pypi_json(data: dict[str, Any], base_url: str = "") -> list[Wheel]:
    """The files of PyPI's JSON API (``/pypi/<project>/json``); relative URLs (a caching
    proxy in front of the index gives those) are resolved against ``base_url``."""
    return [
        Wheel(f["filename"], urljoin(base_url, f["url"]), f["digests"]["sha256"], bool(f.get("yanked")))
        for files in data.get("releases", {}).values()
        for f in files
        if f.get("filename", "").endswith(".whl")
    ]


def wheels_from_simple_json(data: dict[str, Any], base_url: str = "") -> list[Wheel]:
    """The files of a PEP 691 JSON project page (any index that speaks it; URLs may be
    relative to the page)."""
    return [
        Wheel(
            f["filename"],
            urljoin(base_url, f["url"]),
            f.get("hashes", {}).get("sha256", ""),
            bool(f.get("yanked")),
        )
        for f in data.get("files", [])
        if f.get("filename", "").endswith(".whl")
    ]


def pip_configured_index() -> str | None:
    """The index pip itself is configured with (`pip config get global.index-url`), if any."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or None if result.returncode == 0 else None


def index_url(
    cli_value: str | None,
    environ: Mapping[str, str],
    configured: Callable[[], str | None] = pip_configured_index,
) -> str:
    """--index-url, else PIP_INDEX_URL, else pip's configured index (no index is built in)."""
    value = cli_value or environ.get("PIP_INDEX_URL") or configured()
    if not value:
        raise SystemExit(
            "torch_sweep: no package index: give --index-url (a PEP 691 simple index, e.g. the "
            "one pip uses) or set PIP_INDEX_URL"
        )
    return value.rstrip("/")


# ---------------------------------------------------------------- network and engine


def ca_bundle() -> str | None:
    """The host's CA bundle (TLS-intercepting proxies): what the shipped profiles use too."""
    from rpibuild.host import ca

    found = ca.ca_bundle()
    return str(found) if found else None


def list_wheels(index: str, session: Any, ca: str | None) -> list[Wheel]:
    """Every torch wheel on ``index``."""
    url = f"{index}/torch/"
    reply = session.get(
        url,
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        timeout=60,
        verify=ca or True,
    )
    reply.raise_for_status()
    return wheels_from_simple_json(reply.json(), url)


def fetch_wheel(wheel: Wheel, folder: Path, session: Any, ca: str | None) -> Path:
    """Download ``wheel`` once into ``folder``, checked against the index's sha256."""
    target = folder / wheel.filename
    if target.is_file() and file_sha256(target) == wheel.sha256:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    digest = hashlib.sha256()
    with session.get(wheel.url, stream=True, timeout=120, verify=ca or True) as reply:
        reply.raise_for_status()
        with partial.open("wb") as out:
            for chunk in reply.iter_content(chunk_size=1 << 20):
                digest.update(chunk)
                out.write(chunk)
    if wheel.sha256 and digest.hexdigest() != wheel.sha256:
        partial.unlink()
        raise RuntimeError(f"{wheel.filename}: sha256 {digest.hexdigest()}, the index says {wheel.sha256}")
    partial.replace(target)
    return target


def usable_requirements(metadata: str) -> list[str]:
    """The wheel's Requires-Dist lines a Pi can use: no extras, no CUDA or triton."""
    # METADATA is an email-style header block (the description may follow as a body).
    requirements = [
        str(r).strip() for r in email.parser.Parser().parsestr(metadata).get_all("Requires-Dist") or []
    ]
    return [r for r in requirements if "extra ==" not in r and not re.match(UNUSABLE_DEPENDENCIES, r, re.I)]


def install_tree(
    wheel_path: Path, target: Path, ca: str | None, index: str | None, compiler: str | None = None
) -> list[str]:
    """Install the wheel and its usable dependencies into ``target`` on the host, natively.

    Why on the host: pip unpacking a 100-450 MB wheel and byte-compiling it under QEMU takes
    several minutes per version on a busy 2-core host; unzipping natively takes seconds and
    puts the same files in place (a wheel is a zip whose root is site-packages). The pure-Python
    dependencies come from the host's pip for the target platform (its cache keeps them)."""
    with zipfile.ZipFile(wheel_path) as wheel:
        wheel.extractall(target)
        metadata_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        requirements = usable_requirements(wheel.read(metadata_name).decode("utf-8", "replace"))
    if requirements:
        command = [
            sys.executable, "-m", "pip", "install", "--quiet",
            "--disable-pip-version-check", "--no-warn-conflicts", "--root-user-action=ignore",
            "--target", str(target), "--only-binary=:all:", "--implementation", "cp",
            "--python-version", TARGET_PYTHON, "--abi", PYTHON_TAG,
            "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
            *requirements,
        ]  # fmt: skip
        if ca:
            command[4:4] = ["--cert", ca]
        if index:
            command[4:4] = ["--index-url", index]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    if compiler:
        # Byte-compiling torch's thousands of modules is most of its first import under QEMU;
        # a host CPython of the same minor version writes the same .pyc files natively.
        subprocess.run(
            [compiler, "-m", "compileall", "-q", "-j", "0", str(target)],
            check=False,
            stdout=subprocess.DEVNULL,
        )
    return requirements


def host_python(version: str, given: str | None = None) -> str | None:
    """A host interpreter of ``version`` (``3.13``): ``given``, else one on PATH; or None."""
    path = given or shutil.which(f"python{version}")
    if not path:
        return None
    probe = subprocess.run(
        [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return path if probe.returncode == 0 and probe.stdout.strip() == version else None


def sweep_wheel(
    engine: Any,
    image: str,
    wheel_path: Path,
    cpu: str,
    ca: str | None,
    index: str | None,
    compiler: str | None = None,
) -> dict[str, Any]:
    """One version: the wheel installed into a host folder, the sweep run on it in a fresh
    container as ``cpu``, with the image's own Python 3.13."""
    with tempfile.TemporaryDirectory(prefix="rpibuild-torch-sweep-") as tmp:
        site, out = Path(tmp) / "site", Path(tmp) / "out"
        out.mkdir()
        started = time.monotonic()
        try:
            requirements = install_tree(wheel_path, site, ca, index, compiler)
        except (subprocess.CalledProcessError, zipfile.BadZipFile, StopIteration) as exc:
            return {"error": f"install failed: {exc}"}
        installed = round(time.monotonic() - started, 1)
        volumes = {
            # Read-write: the first import writes torch's .pyc files once, not per case.
            str(site): {"bind": "/site", "mode": "rw"},
            str(OP_SWEEP.parent): {"bind": "/sweep", "mode": "ro"},
            str(out): {"bind": "/out", "mode": "rw"},
        }
        started = time.monotonic()
        code, output = engine.run(
            image,
            ["python3", "/sweep/op_sweep.py", "--report", "/out/report.json"],
            platform="linux/arm64",
            environment={"QEMU_CPU": cpu, "PYTHONPATH": "/site"},
            volumes=volumes,
        )
        seconds = round(time.monotonic() - started, 1)
        report_path = out / "report.json"
        if not report_path.is_file():
            tail = output.strip().splitlines()[-5:]
            return {"error": f"the sweep wrote no report (exit {code}): " + " | ".join(tail)}
        report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
        report.update(install_seconds=installed, sweep_seconds=seconds, requirements=requirements)
        return report


# ---------------------------------------------------------------- the table (pure)


def verdict(report: dict[str, Any]) -> str:
    if "error" in report:
        return "not run"
    if report.get("failed"):
        return "FAILS"
    return "passes"


# An import that fails for want of NVIDIA's CUDA libraries (2.11+ aarch64 wheels on PyPI are
# CUDA builds): not an instruction problem, and not fixable on a Pi.
NEEDS_CUDA = re.compile(r"lib(cu|nv)[A-Za-z]*\.so|cuda", re.I)


def cell(case: dict[str, Any]) -> str:
    status = str(case.get("status", "?"))
    if status == "failed" and case.get("signal"):
        return str(case["signal"])
    if (
        status == "failed"
        and case.get("name") == "import"
        and NEEDS_CUDA.search(str(case.get("message", "")))
    ):
        return "needs CUDA"
    return {"ok": "ok", "failed": "FAIL", "skipped": "skip"}.get(status, status)


def table(rows: Sequence[tuple[str, dict[str, Any]]], cases: Sequence[str]) -> str:
    """A Markdown table: one row per version, one column per case, then the verdict."""
    header = ["torch", *cases, "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for version, report in rows:
        by_name = {c["name"]: c for c in report.get("cases", [])}
        cells = [cell(by_name[name]) if name in by_name else "-" for name in cases]
        lines.append("| " + " | ".join([version, *cells, verdict(report)]) + " |")
    return "\n".join(lines)


def notes(rows: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The first failure's message per version (what killed it), and install errors."""
    out = []
    for version, report in rows:
        if "error" in report:
            out.append(f"{version}: {report['error']}")
            continue
        for case in report.get("cases", []):
            if case.get("status") == "failed":
                out.append(f"{version}: {case['name']}: {case.get('message', '')[:300]}")
                break
    return out


def newest_passing(rows: Sequence[tuple[str, dict[str, Any]]]) -> str | None:
    passing = [v for v, report in rows if verdict(report) == "passes"]
    return max(passing, key=lambda v: release_key(v) or ()) if passing else None


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--versions", help="comma-separated torch versions (default: every one from --since)")
    parser.add_argument("--since", default="2.6.0", help="oldest version when listing the index")
    parser.add_argument("--cpu", default="cortex-a53", choices=CPUS, help="QEMU CPU model (cortex-a72: Pi 4)")
    parser.add_argument("--index-url", help="package index (default: $PIP_INDEX_URL, else PyPI)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON on stdout")
    parser.add_argument(
        "--host-python",
        metavar="PATH",
        help=f"a host CPython {TARGET_PYTHON} to byte-compile torch natively (default: on PATH)",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse stored reports of earlier runs")
    args = parser.parse_args(argv)

    import requests

    from rpibuild.build.base import ensure_base
    from rpibuild.build.sources import cache_dir
    from rpibuild.config import load_profile
    from rpibuild.engine import DockerEngine

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    ca = ca_bundle()
    compiler = host_python(TARGET_PYTHON, args.host_python)
    if args.host_python and not compiler:
        parser.error(f"--host-python {args.host_python} is not a working CPython {TARGET_PYTHON}")
    session = requests.Session()
    index = index_url(args.index_url, os.environ)
    wanted = [v.strip() for v in args.versions.split(",") if v.strip()] if args.versions else None
    wheels = select_wheels(list_wheels(index, session, ca), since=args.since, versions=wanted)
    if wanted:  # keep the order given (most important first)
        wheels.sort(key=lambda w: wanted.index(w.version))
    log(f"torch sweep: {len(wheels)} versions ({', '.join(w.version for w in wheels)}), CPU {args.cpu}")

    engine = DockerEngine.connect()
    profile = load_profile(PROFILE, list(PROFILE_OVERRIDES)).profile
    base = ensure_base(profile, engine, progress=log)
    log(f"torch sweep: base {base.image}")
    wheel_cache = cache_dir() / "torch-wheels"
    results_dir = cache_dir() / "torch-sweep" / args.cpu

    rows: list[tuple[str, dict[str, Any]]] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as downloads:
        # Download the next wheel while the current one runs under QEMU.
        pending = {w.version: downloads.submit(fetch_wheel, w, wheel_cache, session, ca) for w in wheels}
        for wheel in wheels:
            stored = results_dir / f"{wheel.version}.json"
            if args.reuse and stored.is_file():
                report = json.loads(stored.read_text(encoding="utf-8"))
                log(f"torch sweep: {wheel.version}: stored report reused")
            else:
                try:
                    path = pending[wheel.version].result()
                except Exception as exc:
                    report = {"error": f"download failed: {exc}"}
                else:
                    log(f"torch sweep: {wheel.version}: running in {base.image} as {args.cpu}")
                    report = sweep_wheel(engine, base.image, path, args.cpu, ca, index, compiler)
                report.update(wheel=wheel.filename, sha256=wheel.sha256, cpu=args.cpu)
                if "error" not in report:
                    results_dir.mkdir(parents=True, exist_ok=True)
                    stored.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            log(f"torch sweep: {wheel.version}: {verdict(report)}")
            rows.append((wheel.version, report))

    rows.sort(key=lambda row: release_key(row[0]) or ())
    cases = list(dict.fromkeys(c["name"] for _, r in rows for c in r.get("cases", [])))
    pin = newest_passing(rows)
    if args.json:
        print(json.dumps({"cpu": args.cpu, "newest_passing": pin, "versions": dict(rows)}, indent=2))
    else:
        print(table(rows, cases))
        for line in notes(rows):
            print(f"- {line}")
        if pin:
            sha = next(r.get("sha256") for v, r in rows if v == pin)
            print(f"\nnewest passing as {args.cpu}: torch {pin} (sha256 {sha})")
    return 0 if pin else 1


if __name__ == "__main__":
    sys.exit(main())

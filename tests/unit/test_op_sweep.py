"""The op sweep (images/verify/op_sweep.py): how a case's end becomes its status, the report's
verdict and exit code, and a real run on the host's torch when it has one."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.scripts import load_script

op_sweep = load_script("images/verify/op_sweep.py", "rpibuild_op_sweep")
SCRIPT = Path(op_sweep.__file__)
CaseResult = op_sweep.CaseResult
PREFIX = op_sweep.RESULT_PREFIX


def line(status: str, message: str = "") -> str:
    return PREFIX + json.dumps({"status": status, "message": message}) + "\n"


def test_a_signal_is_a_failure_named_by_the_signal() -> None:
    result = op_sweep.outcome("matmul", -signal.SIGILL, "Illegal instruction\n", 1.234)
    assert (result.status, result.signal, result.seconds) == ("failed", "SIGILL", 1.23)
    assert result.message.startswith("killed by SIGILL")
    assert op_sweep.outcome("conv2d", -signal.SIGSEGV, "", 0).signal == "SIGSEGV"


def test_result_lines_give_the_status_and_anything_else_fails() -> None:
    assert op_sweep.outcome("sdpa", 0, "noise\n" + line("ok", "fine"), 0).status == "ok"
    skipped = op_sweep.outcome("quantized_linear", 0, line("skipped", "no engine"), 0)
    assert (skipped.status, skipped.message) == ("skipped", "no engine")
    wrong = op_sweep.outcome("lstm", 0, line("failed", "AssertionError: differs"), 0)
    assert (wrong.status, wrong.signal) == ("failed", None)
    assert op_sweep.outcome("lstm", 3, "Traceback...\n", 0).status == "failed"  # no result line
    assert op_sweep.outcome("lstm", 0, PREFIX + "{not json\n", 0).status == "failed"
    assert op_sweep.outcome("lstm", 0, line("maybe"), 0).status == "failed"
    assert "timed out" in op_sweep.outcome("lstm", None, "", 300).message


def test_report_and_exit_code() -> None:
    ok = CaseResult("import", "ok", 1.0, "torch 2.6.0")
    skip = CaseResult("quantized_linear", "skipped", 0.5, "no engine")
    bad = CaseResult("matmul", "failed", 2.0, "killed by SIGILL", "SIGILL")
    passing = op_sweep.build_report([ok, skip], torch="2.6.0")
    assert passing["passed"] is True and passing["skipped"] == ["quantized_linear"]
    assert op_sweep.exit_code(passing) == 0
    failing = op_sweep.build_report([ok, bad, skip])
    assert failing["passed"] is False and failing["failed"] == ["matmul"]
    assert op_sweep.exit_code(failing) == 1
    assert failing["cases"][1] == {
        "name": "matmul",
        "status": "failed",
        "seconds": 2.0,
        "message": "killed by SIGILL",
        "signal": "SIGILL",
    }


def test_a_worker_that_dies_blames_the_case_it_was_running() -> None:
    names = ["import", "matmul", "conv2d", "lstm"]
    imported = PREFIX + json.dumps({"name": "import", "status": "ok", "seconds": 1.0, "message": "torch x"})
    results = op_sweep.collect(names, -signal.SIGILL, imported + "\n", 3.0)
    assert [(r.name, r.status, r.signal) for r in results] == [
        ("import", "ok", None),
        ("matmul", "failed", "SIGILL"),
        ("conv2d", "skipped", None),
        ("lstm", "skipped", None),
    ]
    at_import = op_sweep.collect(names, -signal.SIGILL, "", 1.0)
    assert (at_import[0].status, at_import[0].signal) == ("failed", "SIGILL")
    assert {r.status for r in at_import[1:]} == {"skipped"}


def test_only_keeps_the_sweep_order_and_always_imports() -> None:
    assert op_sweep.parse_only(["softmax,matmul"]) == ["import", "matmul", "softmax"]
    assert op_sweep.parse_only([]) == list(op_sweep.CASES)
    with pytest.raises(ValueError, match="unknown case"):
        op_sweep.parse_only(["matmull"])


def _dies_with_sigill() -> str:
    faulthandler.disable()  # pytest's would print this intended crash's traceback
    os.kill(os.getpid(), signal.SIGILL)
    return "unreachable"


def _computes_garbage() -> str:
    raise AssertionError("matmul 3x5x7: differs from the reference by up to 4")


def test_a_forked_case_killed_by_a_signal_is_reported_and_the_caller_goes_on() -> None:
    died = op_sweep.fork_case("matmul", _dies_with_sigill, timeout=60)
    assert (died.status, died.signal) == ("failed", "SIGILL")
    wrong = op_sweep.fork_case("matmul", _computes_garbage, timeout=60)
    assert (wrong.status, wrong.signal) == ("failed", None)
    assert "differs from the reference" in wrong.message
    fine = op_sweep.fork_case("softmax", lambda: "fine", timeout=60)
    assert (fine.status, fine.message) == ("ok", "fine")


def test_without_torch_import_fails_and_the_rest_is_skipped(tmp_path: Path) -> None:
    """A python that cannot import torch: the sweep says so and exits 1 (no crash)."""
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ImportError('no torch here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "matmul"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(c["name"], c["status"]) for c in report["cases"]] == [
        ("import", "failed"),
        ("matmul", "skipped"),
    ]
    assert "no torch here" in report["cases"][0]["message"]


def test_real_cases_on_the_host_torch() -> None:
    """The cases' references agree with a correct torch (the host's, when it has one)."""
    pytest.importorskip("torch")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "matmul,softmax,quantized_linear"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert [c["name"] for c in report["cases"]] == ["import", "matmul", "softmax", "quantized_linear"]
    assert {c["status"] for c in report["cases"]} <= {"ok", "skipped"}

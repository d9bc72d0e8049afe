"""A broad torch op sweep, each op case in its own process, checked against a reference.

Why: upstream aarch64 wheels have shipped ARMv8.1+ instructions that kill a Pi 3's Cortex-A53
in one code path only (torch 2.4.0 in its BLAS path, 2.10.0 at import through a bundled
allocator built with LSE atomics). A three-op smoke test misses those, and a SIGILL in a
single process would take the whole check down without saying which op died. So a worker
process imports torch (the ``import`` case: a signal there kills only the worker) and forks a
child per case: a child killed by a signal is reported as that case's failure with the
signal's name, and the other cases still run. Each case also compares its numbers with a
reference computed another way (float64, elementwise, or plain Python), so an op that runs
but computes garbage fails too.

Runs inside the target image with the image's own python (under QEMU as the Pi's core in
rpibuild's verify stage, and in ``benchmarks/torch_sweep.py``): stdlib and torch only, small
shapes so it stays fast under emulation. Prints a JSON report on stdout (and writes it to
``--report``); exit code 0 when no case failed, 1 when one did. A skipped case (a quantized
engine the wheel has not got) is reported with its reason and is not a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# Seconds per case (and per import): the first import under QEMU can take minutes when torch
# is not byte-compiled yet; a hung op must not hang the build forever.
DEFAULT_TIMEOUT = 300.0
# Results travel as lines starting with this, then a JSON object.
RESULT_PREFIX = "OP_SWEEP_RESULT "
STATUSES = ("ok", "failed", "skipped")


class Skip(Exception):
    """A case that cannot run with this wheel (reported as skipped, with the reason)."""


@dataclass(frozen=True)
class CaseResult:
    """What one case did: status ok/failed/skipped, the signal that killed it, how long it took."""

    name: str
    status: str
    seconds: float
    message: str = ""
    signal: str | None = None


# ---------------------------------------------------------------- the cases (run in the child)


def _torch() -> Any:
    import torch

    torch.manual_seed(0)
    return torch


def _close(torch: Any, got: Any, want: Any, what: str, rtol: float = 1e-4, atol: float = 1e-4) -> None:
    """Fail with the largest difference when ``got`` is not close to the float64 ``want``."""
    got64 = got.detach().to(torch.float64)
    want64 = want.detach().to(torch.float64)
    if got64.shape != want64.shape:
        raise AssertionError(f"{what}: shape {tuple(got64.shape)}, expected {tuple(want64.shape)}")
    if not torch.isfinite(got64).all():
        raise AssertionError(f"{what}: non-finite values")
    if not torch.allclose(got64, want64, rtol=rtol, atol=atol):
        worst = (got64 - want64).abs().max().item()
        raise AssertionError(f"{what}: differs from the reference by up to {worst:.3g}")


def case_import() -> str:
    torch = _torch()
    return f"torch {torch.__version__}"


def case_matmul() -> str:
    """Shapes from tiny (no BLAS) to ones that take BLAS gemm/gemv paths, float32 and float64.

    The reference is an elementwise multiply-and-sum (no BLAS involved) plus a few entries
    computed in plain Python."""
    torch = _torch()
    shapes = [(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 48, 32), (128, 128, 128), (1, 256, 96), (96, 256, 1)]
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        want = (a.double().unsqueeze(2) * b.double().unsqueeze(0)).sum(1)
        _close(torch, a @ b, want, f"matmul {m}x{k}x{n}", rtol=1e-4, atol=1e-3)
        _close(torch, a.double() @ b.double(), want, f"matmul float64 {m}x{k}x{n}", rtol=1e-9, atol=1e-9)
        i, j = m // 2, n // 2
        plain = sum(a[i, p].item() * b[p, j].item() for p in range(k))
        if not math.isclose((a @ b)[i, j].item(), plain, rel_tol=1e-4, abs_tol=1e-3):
            raise AssertionError(f"matmul {m}x{k}x{n}: entry ({i}, {j}) differs from plain Python")
    m, v = torch.randn(40, 70), torch.randn(70)
    _close(torch, torch.mv(m, v), (m.double() * v.double()).sum(1), "mv 40x70", atol=1e-3)
    x, y = torch.randn(4, 16, 24), torch.randn(4, 24, 8)
    want = (x.double().unsqueeze(3) * y.double().unsqueeze(1)).sum(2)
    _close(torch, torch.bmm(x, y), want, "bmm 4x16x24x8", atol=1e-3)
    linear = torch.nn.Linear(32, 8)
    inp = torch.randn(5, 32)
    want = (inp.double().unsqueeze(1) * linear.weight.double().unsqueeze(0)).sum(2) + linear.bias.double()
    _close(torch, linear(inp), want, "Linear 32->8", atol=1e-3)
    return f"{len(shapes)} matmul shapes, mv, bmm, Linear"


def case_conv2d() -> str:
    """conv2d (padding, stride, groups) against a sum of shifted elementwise products."""
    torch = _torch()
    import torch.nn.functional as F

    x = torch.randn(2, 3, 10, 9)
    for groups, out_ch, stride in ((1, 4, 1), (1, 6, 2), (3, 6, 1)):
        w = torch.randn(out_ch, 3 // groups, 3, 3)
        b = torch.randn(out_ch)
        got = F.conv2d(x, w, b, stride=stride, padding=1, groups=groups)
        xp = F.pad(x.double(), (1, 1, 1, 1))
        height = (xp.shape[2] - 3) // stride + 1
        width = (xp.shape[3] - 3) // stride + 1
        want = torch.zeros(2, out_ch, height, width, dtype=torch.float64)
        per_group = out_ch // groups
        for o in range(out_ch):
            first = (o // per_group) * (3 // groups)
            for c in range(3 // groups):
                for kh in range(3):
                    for kw in range(3):
                        patch = xp[
                            :,
                            first + c,
                            kh : kh + stride * height : stride,
                            kw : kw + stride * width : stride,
                        ]
                        want[:, o] += w[o, c, kh, kw].double() * patch
            want[:, o] += b[o].double()
        _close(torch, got, want, f"conv2d groups={groups} stride={stride}", atol=1e-3)
    return "conv2d: 3 configurations"


def case_lstm() -> str:
    """nn.LSTM (2 layers) against the LSTM cell equations written out in float64."""
    torch = _torch()
    lstm = torch.nn.LSTM(input_size=6, hidden_size=5, num_layers=2, batch_first=True)
    x = torch.randn(3, 4, 6)
    with torch.no_grad():
        got, (h_n, c_n) = lstm(x)
    layer_in = x.double()
    for layer in range(2):
        w_ih = getattr(lstm, f"weight_ih_l{layer}").double()
        w_hh = getattr(lstm, f"weight_hh_l{layer}").double()
        bias = getattr(lstm, f"bias_ih_l{layer}").double() + getattr(lstm, f"bias_hh_l{layer}").double()
        h = torch.zeros(3, 5, dtype=torch.float64)
        c = torch.zeros(3, 5, dtype=torch.float64)
        outputs = []
        for t in range(4):
            gates = layer_in[:, t] @ w_ih.T + h @ w_hh.T + bias
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        layer_in = torch.stack(outputs, dim=1)
        _close(torch, h_n[layer], h, f"LSTM h_n layer {layer}")
        _close(torch, c_n[layer], c, f"LSTM c_n layer {layer}")
    _close(torch, got, layer_in, "LSTM output")
    return "LSTM 2 layers, 4 steps"


def case_sdpa() -> str:
    """scaled_dot_product_attention (plain, causal, masked) against softmax(QK^T/sqrt(d))V."""
    torch = _torch()
    import torch.nn.functional as F

    q, k, v = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 9, 8), torch.randn(2, 3, 9, 8)
    mask = torch.rand(7, 9) > 0.3
    mask[:, 0] = True  # every query sees at least one key

    def reference(q: Any, k: Any, v: Any, allowed: Any | None) -> Any:
        scores = q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v.double()

    _close(torch, F.scaled_dot_product_attention(q, k, v), reference(q, k, v, None), "sdpa")
    _close(
        torch, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), reference(q, k, v, mask), "sdpa mask"
    )
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    got = F.scaled_dot_product_attention(q, k[:, :, :7], v[:, :, :7], is_causal=True)
    _close(torch, got, reference(q, k[:, :, :7], v[:, :, :7], causal), "sdpa causal")
    return "sdpa: plain, boolean mask, causal"


def case_embedding() -> str:
    """Embedding is a row lookup (exact); EmbeddingBag sums and means those rows."""
    torch = _torch()
    emb = torch.nn.Embedding(20, 6)
    idx = torch.tensor([[0, 3, 19], [7, 7, 1]])
    got = emb(idx)
    for r in range(2):
        for c in range(3):
            if not torch.equal(got[r, c], emb.weight[idx[r, c]]):
                raise AssertionError(f"embedding: row {idx[r, c].item()} is not the weight row")
    flat = torch.tensor([1, 2, 4, 4, 9])
    offsets = torch.tensor([0, 2])
    for mode in ("sum", "mean"):
        bag = torch.nn.EmbeddingBag.from_pretrained(emb.weight.detach(), mode=mode)
        rows = emb.weight.detach().double()
        want = [rows[flat[:2]], rows[flat[2:]]]
        want_t = torch.stack([w.sum(0) if mode == "sum" else w.mean(0) for w in want])
        _close(torch, bag(flat, offsets), want_t, f"EmbeddingBag {mode}")
    return "Embedding, EmbeddingBag sum/mean"


def case_softmax() -> str:
    """softmax and log_softmax over both dims against exp/log computed in plain Python."""
    torch = _torch()
    x = torch.randn(5, 37) * 4
    for dim in (0, 1):
        got = torch.softmax(x, dim=dim)
        rows = x.double().exp()
        want = rows / rows.sum(dim=dim, keepdim=True)
        _close(torch, got, want, f"softmax dim={dim}", rtol=1e-5, atol=1e-6)
        _close(torch, torch.log_softmax(x, dim=dim), want.log(), f"log_softmax dim={dim}", atol=1e-4)
    row = [x[2, j].item() for j in range(37)]
    top = max(row)
    total = sum(math.exp(value - top) for value in row)
    plain = [math.exp(value - top) / total for value in row]
    for j, expected in enumerate(plain):
        if not math.isclose(torch.softmax(x, dim=1)[2, j].item(), expected, rel_tol=1e-4, abs_tol=1e-7):
            raise AssertionError(f"softmax: entry (2, {j}) differs from plain Python")
    return "softmax, log_softmax"


def case_quantized_linear() -> str:
    """A dynamically quantized Linear (int8 weights) against the float Linear it came from."""
    torch = _torch()
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise Skip("the wheel has no quantized engine (torch.backends.quantized.supported_engines)")
    try:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear  # noqa: F401
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:
        raise Skip(f"no dynamic quantization in this torch: {exc}") from None
    checked = []
    for engine in engines:
        torch.backends.quantized.engine = engine
        model = torch.nn.Sequential(torch.nn.Linear(32, 16))
        quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        x = torch.randn(4, 32)
        with torch.no_grad():
            want = model(x)
            got = quantized(x)
        # int8 weights and activations: about 1% of the output's range is the expected error.
        tolerance = 0.05 * want.abs().max().item() + 1e-3
        _close(torch, got, want, f"quantized Linear ({engine})", rtol=0.0, atol=tolerance)
        checked.append(engine)
    return "quantized dynamic Linear on " + ", ".join(checked)


def case_train_step() -> str:
    """One SGD step with autograd: gradients finite and equal to a finite difference, loss drops."""
    torch = _torch()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    loss_fn = torch.nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    for name, param in model.named_parameters():
        if param.grad is None or not torch.isfinite(param.grad).all():
            raise AssertionError(f"train step: gradient of {name} is missing or not finite")
    weight = model[0].weight
    analytic = weight.grad[1, 2].item()
    eps = 1e-6
    with torch.no_grad():
        weight[1, 2] += eps
        up = loss_fn(model(x), y).item()
        weight[1, 2] -= 2 * eps
        down = loss_fn(model(x), y).item()
        weight[1, 2] += eps
    numeric = (up - down) / (2 * eps)
    if not math.isclose(analytic, numeric, rel_tol=1e-4, abs_tol=1e-7):
        raise AssertionError(f"train step: autograd gave {analytic:.6g}, finite difference {numeric:.6g}")
    optimizer.step()
    after = loss_fn(model(x), y).item()
    if not after < loss.item():
        raise AssertionError(f"train step: loss went from {loss.item():.6g} to {after:.6g}")
    # The same in float32, the dtype a model trains in on the Pi.
    model32 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt32 = torch.optim.SGD(model32.parameters(), lr=0.05)
    before32 = loss_fn(model32(x.float()), y.float())
    before32.backward()
    opt32.step()
    after32 = loss_fn(model32(x.float()), y.float()).item()
    if not math.isfinite(after32) or not after32 < before32.item():
        raise AssertionError(f"train step float32: loss went from {before32.item():.6g} to {after32:.6g}")
    return f"loss {loss.item():.4f} -> {after:.4f}"


CASES: dict[str, Callable[[], str]] = {
    "import": case_import,
    "matmul": case_matmul,
    "conv2d": case_conv2d,
    "lstm": case_lstm,
    "sdpa": case_sdpa,
    "embedding": case_embedding,
    "softmax": case_softmax,
    "quantized_linear": case_quantized_linear,
    "train_step": case_train_step,
}


def _run_case_here(case: Callable[[], str]) -> str:
    """Run one case in this process and return its result line (status and message)."""
    try:
        message = case()
        status = "ok"
    except Skip as exc:
        status, message = "skipped", str(exc)
    except Exception as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"
    return RESULT_PREFIX + json.dumps({"status": status, "message": message}) + "\n"


# ---------------------------------------------------------------- classifying how a case ended


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(text: str, limit: int = 400) -> str:
    lines = [line for line in text.strip().splitlines() if not line.startswith(RESULT_PREFIX)]
    text = "\n".join(lines[-6:]).strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def outcome(name: str, returncode: int | None, output: str, seconds: float) -> CaseResult:
    """Turn a finished (or timed-out: ``returncode`` None) case process into its result.

    A negative return code is a signal (SIGILL: an instruction this CPU lacks); a process that
    exited without its result line died some other way (os._exit, an abort in C++)."""
    seconds = round(seconds, 2)
    if returncode is None:
        return CaseResult(name, "failed", seconds, f"timed out after {seconds:.0f} s")
    if returncode < 0:
        sig = signal_name(-returncode)
        detail = _tail(output)
        return CaseResult(
            name, "failed", seconds, f"killed by {sig}" + (f": {detail}" if detail else ""), sig
        )
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        return CaseResult(name, "failed", seconds, f"exited {returncode} without a result: {_tail(output)}")
    try:
        data = json.loads(lines[-1][len(RESULT_PREFIX) :])
        status, message = str(data["status"]), str(data.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return CaseResult(name, "failed", seconds, f"unreadable result line: {lines[-1][:200]}")
    if status not in STATUSES:
        return CaseResult(name, "failed", seconds, f"unknown status {status!r}")
    return CaseResult(name, status, seconds, message)


def fork_case(name: str, case: Callable[[], str], timeout: float = DEFAULT_TIMEOUT) -> CaseResult:
    """Run ``case`` in a forked child whose output goes to a temporary file, and classify how
    it ended. Forking after ``import torch`` (done once, in the sweep's worker) saves the
    import per case, which under QEMU costs many seconds; each fork still starts torch's
    thread pools afresh, since the worker runs no op itself."""
    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 0
            try:
                os.dup2(capture.fileno(), 1)
                os.dup2(capture.fileno(), 2)
                line = _run_case_here(case)
                sys.stdout.flush()
                sys.stderr.flush()
                # Straight to the file: sys.stdout may not be fd 1 (a test runner's capture).
                os.write(capture.fileno(), line.encode())
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        deadline = started + timeout
        returncode: int | None = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        capture.seek(0)
        output = capture.read().decode("utf-8", "replace")
    return outcome(name, returncode, output, seconds)


# ---------------------------------------------------------------- the worker and the parent


def worker(names: Sequence[str], timeout: float) -> int:
    """The sweep's worker process: import torch once (the ``import`` case), then fork each
    other case. Prints one result line per case for the parent. If the import itself kills
    this process, the parent sees it die before any line and blames ``import``."""
    started = time.monotonic()
    try:
        import torch

        imported = CaseResult(
            "import", "ok", round(time.monotonic() - started, 2), f"torch {torch.__version__}"
        )
    except Exception as exc:
        imported = CaseResult(
            "import", "failed", round(time.monotonic() - started, 2), f"{type(exc).__name__}: {exc}"
        )
    _emit(imported)
    for name in names:
        if name == "import":
            continue
        if imported.status != "ok":
            _emit(CaseResult(name, "skipped", 0.0, "torch does not import"))
            continue
        _emit(fork_case(name, CASES[name], timeout))
    return 0


def _emit(result: CaseResult) -> None:
    print(RESULT_PREFIX + json.dumps(asdict(result)), flush=True)


def collect(names: Sequence[str], returncode: int | None, output: str, seconds: float) -> list[CaseResult]:
    """The parent's reading of the worker: its result lines, then (when the worker died early)
    the rest of the cases, the first of them blamed for the worker's death."""
    results: dict[str, CaseResult] = {}
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                data = json.loads(line[len(RESULT_PREFIX) :])
                results[data["name"]] = CaseResult(**data)
            except (ValueError, KeyError, TypeError):
                continue
    ordered = ["import", *[n for n in names if n != "import"]]
    missing = [n for n in ordered if n not in results]
    results = {n: r for n, r in results.items() if n in ordered}
    if missing:
        died = outcome(missing[0], returncode, output, seconds)
        if died.status != "failed":
            died = CaseResult(missing[0], "failed", died.seconds, "the sweep's worker stopped here")
        results[missing[0]] = died
        reason = "torch does not import" if missing[0] == "import" else f"the worker died in {missing[0]}"
        for name in missing[1:]:
            results[name] = CaseResult(name, "skipped", 0.0, reason)
    return [results[n] for n in ordered]


def sweep(
    names: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    python: str = sys.executable,
    log: Callable[[str], None] | None = None,
) -> list[CaseResult]:
    """Run the worker in a child process (so even a signal at import is a reported result),
    logging each case as it ends: under QEMU the whole sweep takes minutes."""
    command = [python, os.path.abspath(__file__), "--worker", ",".join(names), "--timeout", str(timeout)]
    started = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        # The worker times out each case itself; this only guards against a hang at import.
        watchdog = threading.Timer(timeout * (len(names) + 1), process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                if log and line.startswith(RESULT_PREFIX):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        log(_describe(CaseResult(**json.loads(line[len(RESULT_PREFIX) :]))))
            returncode: int | None = process.wait()
        finally:
            timed_out = not watchdog.is_alive()
            watchdog.cancel()
    if timed_out:
        returncode = None
    results = collect(names, returncode, "".join(lines), time.monotonic() - started)
    if log:
        for result in results:
            if not any(
                line.startswith(RESULT_PREFIX) and f'"name": "{result.name}"' in line for line in lines
            ):
                log(_describe(result))
    return results


def _describe(result: CaseResult) -> str:
    extra = f" ({result.signal})" if result.signal else ""
    return f"op-sweep: {result.name:<17} {result.status}{extra} {result.seconds:.1f} s  {result.message}"


def build_report(results: Sequence[CaseResult], **facts: object) -> dict[str, object]:
    """The JSON report: facts about the run, every case, and which failed."""
    failed = [r.name for r in results if r.status == "failed"]
    return {
        **facts,
        "cases": [asdict(r) for r in results],
        "failed": failed,
        "skipped": [r.name for r in results if r.status == "skipped"],
        "passed": not failed,
    }


def exit_code(report: dict[str, object]) -> int:
    """0 when no case failed (skips included), 1 otherwise."""
    return 0 if report.get("passed") and not report.get("failed") else 1


def parse_only(values: Sequence[str]) -> list[str]:
    """Case names from ``--only`` (repeatable, comma-separated), in the sweep's order; ``import``
    is always among them, since every other case needs it."""
    wanted = {part.strip() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(wanted - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    return [name for name in CASES if name in wanted or name == "import"] if wanted else list(CASES)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="CASE[,CASE]", help="run these cases")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per case")
    parser.add_argument("--report", metavar="FILE", help="also write the JSON report here")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--worker", metavar="CASES", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(parse_only([args.worker]), args.timeout)
    if args.list:
        print("\n".join(CASES))
        return 0
    try:
        names = parse_only(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    started = time.monotonic()
    results = sweep(names, args.timeout, log=lambda line: print(line, file=sys.stderr, flush=True))
    report = build_report(
        results,
        python=platform.python_version(),
        machine=platform.machine(),
        qemu_cpu=os.environ.get("QEMU_CPU", ""),
        torch=_child_message(results, "import"),
        seconds=round(time.monotonic() - started, 1),
    )
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    print(text)
    return exit_code(report)


def _child_message(results: Sequence[CaseResult], name: str) -> str | None:
    for result in results:
        if result.name == name and result.status == "ok":
            return result.message.removeprefix("torch ")
    return None


if __name__ == "__main__":
    sys.exit(main())

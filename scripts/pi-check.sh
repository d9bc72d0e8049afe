#!/usr/bin/env bash
# On-Pi checks of an rpibuild root: can the QPU backend run, are its results right, how fast.
#
# Usage: pi-check.sh [options] [ROOT]
#   ROOT   HOST:/DIR or a folder: run the checks inside it through pi-chroot.sh (as root).
#          Without ROOT the checks run right here (inside the chroot, or on a Pi booted
#          from the root over NFS).
# Options:
#   --quick        a short benchmark (small sizes)
#   --no-bench     skip the benchmark
#   --no-calibrate skip measuring this Pi's memory model (done only when the QPUs can run)
#   --require-qpu  fail when the QPU backend cannot run here (default: report it and check
#                  whatever backend can run, e.g. cpu on a host without a VideoCore IV)
#   --log FILE     also write everything to FILE
#   -h, --help
#
# Runs, with the root's venv python:
#   1. python -m torch_qpu doctor   can the qpu backend run here (/dev/vcio, /dev/mem, root, ...)
#   2. python -m torch_qpu.check    every op against torch on random tensors (must pass)
#   3. python -m torch_qpu calibrate --save   this Pi's memory model, which auto reads
#                                  (~/.config/torch_qpu/memory_model.toml; QPUs only)
#   4. python -m torch_qpu offload  where auto now runs typical calls (QPU or CPU)
#   5. python -m torch_qpu.bench    CPU vs QPU timings, as in the original write-up's table
# Exit status: 0 all passed; 1 a check failed (or no QPU with --require-qpu); 2 usage or
# torch_qpu is not installed in the root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]:-.}")" && pwd)  # unset when fed to bash -s
quick=0
bench=1
calibrate=1
require_qpu=0
log_file=""
root=""
inside=0
forward=()

die() { printf 'pi-check: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while [ "$#" -gt 0 ]; do
    case $1 in
        --quick) quick=1; forward+=("$1"); shift ;;
        --no-bench) bench=0; forward+=("$1"); shift ;;
        --no-calibrate) calibrate=0; forward+=("$1"); shift ;;
        --require-qpu) require_qpu=1; forward+=("$1"); shift ;;
        --log) [ "$#" -ge 2 ] || die "--log needs a file"; log_file=$2; shift 2 ;;
        --inside) inside=1; shift ;;  # internal: we are the copy running in the chroot
        -h | --help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$root" ] || die "one ROOT only"; root=$1; shift ;;
    esac
done

if [ -n "$log_file" ]; then
    # Everything below also goes to the log; the exit status is still the checks' own.
    exec > >(tee -a "$log_file") 2>&1
fi

if [ -n "$root" ] && [ "$inside" -eq 0 ]; then
    # Feed this script to bash inside the root on stdin: nothing is copied into the root.
    exec "$here/pi-chroot.sh" "$root" -- /bin/bash -s -- --inside "${forward[@]}" <"${BASH_SOURCE[0]}"
fi

python=python3
if [ -x /opt/rpibuild/venv/bin/python ]; then python=/opt/rpibuild/venv/bin/python; fi
command -v "$python" >/dev/null || die "no python3 here: is this an rpibuild root?"
"$python" -c 'import torch_qpu' </dev/null 2>/dev/null \
    || die "torch_qpu is not installed for $python (build the profile with extension.enabled)"

section() { printf '\n== %s ==\n' "$*"; }
failed=0

section "doctor: can the QPU backend run here?"
qpu_ready=1
"$python" -m torch_qpu doctor </dev/null || qpu_ready=0
if [ "$qpu_ready" -eq 0 ]; then
    if [ "$require_qpu" -eq 1 ]; then
        echo "pi-check: the QPU backend cannot run here (see the fixes above)"
        failed=1
    else
        echo "pi-check: no QPU here; checking the backends that can run"
    fi
fi

section "check: every op against torch"
"$python" -m torch_qpu.check </dev/null || failed=1

if [ "$calibrate" -eq 1 ] && [ "$qpu_ready" -eq 1 ]; then
    section "calibrate: this Pi's memory model (auto reads it)"
    "$python" -m torch_qpu calibrate --save </dev/null || failed=1
fi

section "offload: where auto runs typical calls"
"$python" -m torch_qpu offload </dev/null || failed=1

if [ "$bench" -eq 1 ]; then
    section "bench: CPU vs QPU"
    bench_args=()
    if [ "$quick" -eq 1 ]; then bench_args=(--quick --max-exp 3 --repeat 2); fi
    "$python" -m torch_qpu.bench "${bench_args[@]}" </dev/null || failed=1
fi

section "summary"
if [ "$failed" -eq 0 ]; then
    echo "pi-check: passed$([ "$qpu_ready" -eq 1 ] && echo ' (QPU backend ready)' || echo ' (no QPU here)')"
else
    echo "pi-check: FAILED"
fi
exit "$failed"

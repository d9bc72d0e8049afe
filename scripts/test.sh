#!/usr/bin/env bash
# Set up the host (idempotent) and run every test: lint, unit, integration, e2e, and
# QPULib's own test suite (tests/qpulib, with its UBSan run).
#
# This is the README's test command and what CI runs (.ci/run). Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -m unit` for the fast tests only, or
# `-m qpulib_suite` for QPULib's test programs and the UBSan run (README: Tests).
#
# Environment:
#   RPIBUILD_HOST_TORCH   the torch the host-side extension tests install
#                         (default torch==2.13.0, a CPU build)
#   RPIBUILD_QPULIB_SRC   a QPULib source tree to test against (default: the profiles'
#                         pinned upstream archive, fetched and checked by `rpibuild sources fetch`)
#   RPIBUILD_SOURCE_MIRROR  where pinned archives come from on hosts without GitHub (default:
#                         a shared/third_party/ folder beside the checkout, when there is one)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
python=${PYTHON:-python3}
log() { printf '\033[1mtest:\033[0m %s\n' "$*" >&2; }

bash scripts/setup-host.sh

# Hosts without GitHub (CI here) keep the pinned upstream archives beside the checkout.
if [ -z "${RPIBUILD_SOURCE_MIRROR:-}" ] && [ -d "$here/../shared/third_party" ]; then
    export RPIBUILD_SOURCE_MIRROR="$here/../shared/third_party"
fi
# QPULib is part of what the tests cover: a source that cannot be had fails the run.
if [ -z "${RPIBUILD_QPULIB_SRC:-}" ]; then
    log "fetching QPULib (pinned, content-checked)"
    RPIBUILD_QPULIB_SRC=$("$python" -m rpibuild sources fetch)
fi
export RPIBUILD_QPULIB_SRC
export PIP_ROOT_USER_ACTION=ignore  # CI runs as root on purpose
quiet_pip() { "$python" -m pip install -q --disable-pip-version-check "$@"; }

# The extension's own tests run on the host against a host torch (cpu backend always;
# emulator backend when RPIBUILD_QPULIB_SRC names QPULib's source).
log "installing ${RPIBUILD_HOST_TORCH:-torch==2.13.0} and the torch-qpu extension"
quiet_pip "${RPIBUILD_HOST_TORCH:-torch==2.13.0}"
quiet_pip --no-build-isolation --force-reinstall --no-deps ./images/torch-qpu

log "lint (ruff) and types (mypy --strict: rpibuild/ and the fake engine, both engines against the Engine protocol)"
"$python" -m ruff check .
"$python" -m ruff format --check .
"$python" -m mypy
if command -v shellcheck >/dev/null; then shellcheck scripts/*.sh images/qpulib/*.sh images/vc4c/*.sh images/torch-debian/*.sh images/torch-compile/*.sh; fi

# The extension's tests must run its QPULib kernels: --require-qpulib (declared by
# images/torch-qpu/tests/conftest.py) makes a missing emulator backend or QPULib source
# fail those tests instead of skipping them. Given whenever pytest collects that folder
# (always, unless the arguments name only paths outside it).
require=(--require-qpulib)
paths=()
for arg in "$@"; do
    if [ -e "${arg%%::*}" ]; then paths+=("$(realpath "${arg%%::*}")"); fi
done
if [ ${#paths[@]} -gt 0 ]; then
    require=()
    for path in "${paths[@]}"; do
        case "$here/images/torch-qpu/tests/" in "$path"/*) require=(--require-qpulib) ;; esac
        case "$path/" in "$here/images/torch-qpu/"*) require=(--require-qpulib) ;; esac
    done
fi

log "pytest"
exec "$python" -m pytest "${require[@]}" "$@"

#!/usr/bin/env bash
# Set up the host (idempotent) and run every test: lint, unit, integration, e2e.
#
# This is the README's test command and what CI runs (.ci/run). Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -m unit` for the fast tests only.
#
# Environment:
#   RPIBUILD_HOST_TORCH   the torch the host-side extension tests install
#                         (default torch==2.13.0, a CPU build)
#   RPIBUILD_QPULIB_SRC   a QPULib source tree: enables the emulator-backend tests and a
#                         full (QPULib-enabled) build; without it they are skipped, loudly
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
python=${PYTHON:-python3}
log() { printf '\033[1mtest:\033[0m %s\n' "$*" >&2; }

bash scripts/setup-host.sh

# The extension's own tests run on the host against a host torch (cpu backend always;
# emulator backend when RPIBUILD_QPULIB_SRC names QPULib's source).
log "installing ${RPIBUILD_HOST_TORCH:-torch==2.13.0} and the torch-qpu extension"
"$python" -m pip install -q --disable-pip-version-check "${RPIBUILD_HOST_TORCH:-torch==2.13.0}" 2>&1 \
    | grep -vE "^WARNING: (Running pip as|Location 'file)" >&2 || true
"$python" -m pip install -q --disable-pip-version-check --no-build-isolation --force-reinstall --no-deps \
    ./images/torch-qpu 2>&1 | grep -vE "^WARNING: (Running pip as|Location 'file)" >&2 || true

log "lint (ruff)"
"$python" -m ruff check .
"$python" -m ruff format --check .
if command -v shellcheck >/dev/null; then shellcheck scripts/*.sh images/qpulib/*.sh; fi

log "pytest"
exec "$python" -m pytest "$@"

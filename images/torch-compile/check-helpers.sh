#!/usr/bin/env bash
# Before a compile with distcc helpers: say which helper does not answer (its jobs then run
# here: distcc falls back to a local compile, and so does the build, only slower), then run
# the compile (the arguments).
#
# Environment: DISTCC_HOSTS (set by rpibuild: HOST:PORT/LIMIT ... localhost/N), DISTCC_DIR.
set -uo pipefail
[ "$#" -ge 1 ] || { echo "usage: check-helpers.sh COMMAND..." >&2; exit 2; }
# distcc makes its lock and state folders inside DISTCC_DIR, but not DISTCC_DIR itself.
mkdir -p "${DISTCC_DIR:-$HOME/.distcc}"
answering=0
for entry in ${DISTCC_HOSTS:-}; do
    hostport=${entry%%/*}
    [ "$hostport" = localhost ] && continue
    host=${hostport%%:*}
    port=${hostport##*:}
    # The host and port are arguments of the inner shell, never part of its text.
    # shellcheck disable=SC2016
    if timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null; then
        answering=$((answering + 1))
    else
        echo "compile: warning: distcc helper $hostport does not answer: its jobs run here instead"
    fi
done
echo "compile: distcc helpers answering: $answering"
exec "$@"

#!/usr/bin/env bash
# The distcc helper's entry point (the distcc-helper stage): distccd in the foreground, for
# the cross compiler this image has (the cross stage's), answering only the networks given.
#
# Usage: distccd.sh --allow NETWORK [--allow NETWORK...] [distccd options]
#   e.g. --allow 192.168.1.0/24 (the machine that runs the compile); distccd refuses to start
#   without --allow. Port 3632 takes jobs; 3633 answers its statistics (dcc_compile_ok ...).
set -euo pipefail
case " $* " in
    *" --allow "* | *" --allow="* | *" -a "*) ;;
    *)
        echo "distccd.sh: give --allow NETWORK (the network of the machine that compiles)" >&2
        exit 2
        ;;
esac
exec distccd --daemon --no-detach --log-stderr --log-level warning \
    --stats --stats-port 3633 --user distccd "$@"

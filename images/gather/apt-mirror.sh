#!/usr/bin/env bash
# Point this container's deb lines at network.apt_mirror, for `rpibuild sources fetch --all`'s
# gather of Debian's source (a build's stages do the same in Dockerfile.j2's network macro).
#
# Usage: apt-mirror.sh FILE     (FILE holds the mirror URL, one line; it may carry credentials)
#
# The mirror is data, never program text: awk reads it from FILE and puts it in place of every
# http(s) URL of the sources files. Nothing prints it.
set -euo pipefail
mirror_file=$1
[ -f "$mirror_file" ] || {
    echo "apt-mirror.sh: error: $mirror_file is not a file" >&2
    exit 1
}
for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$list" ] || continue
    awk 'NR == FNR { mirror = $0; next }
        {
            out = ""
            while (match($0, /https?:\/\/[^ ]+/)) {
                out = out substr($0, 1, RSTART - 1) mirror
                $0 = substr($0, RSTART + RLENGTH)
            }
            print out $0
        }' "$mirror_file" "$list" >"$list.rpibuild"
    cat "$list.rpibuild" >"$list"
    rm -f "$list.rpibuild"
done
echo "apt-mirror: Debian's archive through the apt mirror setting"

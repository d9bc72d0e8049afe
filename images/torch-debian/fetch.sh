#!/usr/bin/env bash
# Fetch a Debian source package at an exact version and unpack it with Debian's patches, then
# rpibuild's own (patches/series next to this file).
#
# Usage: fetch.sh PACKAGE VERSION DEST
#        fetch.sh --unpack DSC DEST     (only the checks and patches, on files fetched earlier)
#        fetch.sh --gather PACKAGE VERSION SUITE OUT
#                                       (`rpibuild sources fetch --all`: the source package and
#                                       the signed indexes that vouch for it, laid out in OUT as
#                                       a small Debian archive)
#
# Trust chain, all checked by apt and dpkg-source (nothing here skips a check): the suite's
# InRelease is signed by the Debian archive keyring -> it lists the Sources index's hash ->
# Sources lists the hashes of the .dsc and of every tarball -> the .dsc lists them again and
# dpkg-source -x checks them while unpacking. A tampered or truncated download fails there.
# The deb-src lines are made from the image's own deb lines (same mirror, same suite), or,
# when a gathered archive is mounted at $LOCAL_ARCHIVE (a source mirror folder's debian/),
# name that archive only: apt checks it exactly as it checks the mirror (its InRelease against
# the archive keyring, then Sources, then the .dsc), so the source comes from no network.
set -euo pipefail
LOCAL_ARCHIVE=/opt/rpibuild/debian-archive

die() {
    echo "torch-debian/fetch.sh: error: $*" >&2
    exit 1
}
here=$(cd "$(dirname "$0")" && pwd)

# dpkg-source checks every file against the .dsc's checksums (a tampered or truncated file
# fails here), unpacks and applies Debian's patch series; then rpibuild's patches, in order.
unpack() {
    local dsc=$1 dest=$2 name
    echo "fetch: unpacking $dsc (checksums of the .dsc; Debian's patch series)"
    rm -rf "$dest"
    dpkg-source --require-strong-checksums -x "$dsc" "$dest" || die "$dsc failed its checks: not unpacked"
    echo "fetch: rpibuild's patches"
    while read -r name _; do
        case "$name" in '' | '#'*) continue ;; esac
        [ -f "$here/patches/$name" ] || die "patches/series names $name, which does not exist"
        patch -d "$dest" -p1 --forward --batch --quiet <"$here/patches/$name" || die "$name does not apply"
        echo "fetch:   applied $name"
    done <"$here/patches/series"
}

if [ "${1:-}" = --unpack ]; then
    [ "$#" -eq 3 ] || die "usage: fetch.sh --unpack DSC DEST"
    unpack "$2" "$3"
    exit 0
fi
gather_to=
if [ "${1:-}" = --gather ]; then
    [ "$#" -eq 5 ] || die "usage: fetch.sh --gather PACKAGE VERSION SUITE OUT"
    suite=$4
    gather_to=$5
    set -- "$2" "$3" ""
fi
[ "$#" -eq 3 ] || die "usage: fetch.sh PACKAGE VERSION DEST"
package=$1
version=$2
dest=$3

apt_sources=()
if [ -z "$gather_to" ] && [ -d "$LOCAL_ARCHIVE/dists" ]; then
    echo "fetch: source packages from the gathered archive (the source mirror's debian/), not the network"
    # apt sees this archive only (no other list, no sources.list.d): nothing can come from elsewhere.
    for dist in "$LOCAL_ARCHIVE"/dists/*/; do
        echo "deb-src file:$LOCAL_ARCHIVE $(basename "$dist") main"
    done >/etc/apt/rpibuild-local-archive.list
    mkdir -p /etc/apt/rpibuild-no-parts
    apt_sources=(-o Dir::Etc::SourceList=/etc/apt/rpibuild-local-archive.list
        -o Dir::Etc::SourceParts=/etc/apt/rpibuild-no-parts)
else
    for list in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$list" ] || continue
        awk '$1 == "deb" { $1 = "deb-src"; print }' "$list"
    done >/etc/apt/sources.list.d/rpibuild-deb-src.list
    for sources in /etc/apt/sources.list.d/*.sources; do
        [ -f "$sources" ] || continue
        awk '/^Types:/ && !/deb-src/ { print $0 " deb-src"; next } { print }' "$sources" >"$sources.tmp"
        cat "$sources.tmp" >"$sources" && rm -f "$sources.tmp"
    done
fi
apt-get "${apt_sources[@]}" update -qq

# The versions the archive has (deb822 records of the Sources index, not human output).
versions=$(apt-cache "${apt_sources[@]}" showsrc --only-source "$package" 2>/dev/null |
    awk -v pkg="$package" '/^Package: / { p = $2 } /^Version: / && p == pkg { print $2 }' | sort -u)
[ -n "$versions" ] || die "the archive has no source package '$package' (check the suite and the deb lines)"
if ! grep -qxF -- "$version" <<<"$versions"; then
    known=$(tr '\n' ' ' <<<"$versions")
    die "$package $version is not in this suite's archive; versions there: ${known% } (torch.version)"
fi

# The source package where the suite's Sources index puts it, the suite's InRelease as apt
# verified it, and the Sources index that InRelease lists (fetched again by apt-helper, which
# checks it against that hash): what apt needs to verify the package offline.
gather() {
    local out=$1 uri directory lists inrelease hash index
    uri=$(apt-get source --print-uris -qq "$package=$version" | awk -F"'" '$2 ~ /\.dsc$/ { print $2; exit }')
    [ -n "$uri" ] || die "apt names no .dsc for $package $version"
    directory=$(apt-cache showsrc --only-source "$package" |
        awk -v v="$version" '/^Version: / { ok = ($2 == v) } ok && /^Directory: / { print $2; exit }')
    mkdir -p "$out/$directory"
    (cd "$out/$directory" && apt-get source -qq --download-only "$package=$version")
    lists=/var/lib/apt/lists
    inrelease=$(find "$lists" -maxdepth 1 -name "*_dists_${suite}_InRelease" | head -n 1)
    [ -n "$inrelease" ] || die "no InRelease of the suite $suite among apt's lists"
    hash=$(awk '/^SHA256:/ { s = 1; next } /^[^ ]/ { s = 0 } s && $3 == "main/source/Sources.xz" { print $1 }' "$inrelease")
    [ -n "$hash" ] || die "the InRelease of $suite lists no main/source/Sources.xz"
    index="$out/dists/$suite/main/source"
    mkdir -p "$index/by-hash/SHA256"
    cp "$inrelease" "$out/dists/$suite/InRelease"
    /usr/lib/apt/apt-helper download-file "${uri%%/pool/*}/dists/$suite/main/source/Sources.xz" \
        "$index/Sources.xz" "SHA256:$hash" >/dev/null
    ln -f "$index/Sources.xz" "$index/by-hash/SHA256/$hash"
    echo "fetch: gathered $package $version with the signed indexes of $suite into $out"
}
if [ -n "$gather_to" ]; then
    gather "$gather_to"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cd "$work"
echo "fetch: $package $version (verified against the signed Sources index)"
apt-get "${apt_sources[@]}" source -qq --download-only "$package=$version"
unpack "$(find . -maxdepth 1 -name '*.dsc' | head -n 1)" "$dest"

# As debian/rules does: the flatbuffers header is regenerated by this suite's flatc, so it
# matches the libflatbuffers-dev the build links.
(cd "$dest/torch/csrc/jit/serialization" && flatc --cpp --gen-mutable --scoped-enums mobile_bytecode.fbs)
echo "fetch: $dest ready"

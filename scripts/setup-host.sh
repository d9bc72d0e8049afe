#!/usr/bin/env bash
# Set up an x86_64 Debian/Ubuntu host for rpibuild; safe to run again (idempotent).
#
# Installs (only what is missing): a Docker engine and its buildx plugin, qemu-user-static,
# mmdebstrap and arch-test (bases of foreign architectures; debootstrap stays selectable), a
# registry server for the tests (Debian's docker-registry), htpasswd, zstd, the toolchain of
# QPULib's qpusim tests (cmake, LLVM 14, clang 14); starts the engine (systemd when it runs,
# else dockerd in the background: containers and CI hosts have no systemd); installs rpibuild with its test dependencies; registers the arm and
# aarch64 binfmt handlers. Needs root. (shellcheck is for the tests.)
#
# Environment:
#   RPIBUILD_SKIP_PIP=1   do not pip install rpibuild (e.g. inside your own venv setup)
#   PYTHON                the interpreter to install into (default: python3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
log() { printf '\033[1msetup-host:\033[0m %s\n' "$*" >&2; }
die() { printf 'setup-host: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and registers binfmt handlers)"
command -v apt-get >/dev/null || die "needs a Debian-based host (apt-get)"

# 1. Debian packages, installed only when one is missing.
packages=(qemu-user-static mmdebstrap arch-test debootstrap docker-registry apache2-utils zstd ca-certificates tar shellcheck)
# openssl: the registry tests make a CA and a server certificate for their TLS registry.
packages+=(openssl)
# libcap2-bin (setcap/getcap): the rootfs tests give a file a capability and check the export keeps it.
packages+=(libcap2-bin)
# QPULib's qpusim mode (tests/qpulib): images/vc4c/build.sh builds VC4C's library with cmake against
# LLVM 14 (its CMake also requires clang, whose version it reads) and applies rpibuild's patches.
packages+=(cmake make g++ patch llvm-14-dev clang-14)
command -v dockerd >/dev/null || packages+=(docker.io)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi
# The registry package starts nothing useful here; the tests run their own on 127.0.0.1.
pkill -f '^/usr/bin/docker-registry serve /etc/docker/registry/config.yml' 2>/dev/null || true

# 2. The engine.
if docker info >/dev/null 2>&1; then
    log "Docker engine running"
elif [ -d /run/systemd/system ]; then
    log "starting docker with systemd"
    systemctl start docker
else
    log "starting dockerd in the background (log: /var/log/rpibuild-dockerd.log)"
    nohup dockerd >/var/log/rpibuild-dockerd.log 2>&1 &
fi
for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker info >/dev/null 2>&1 || die "the Docker engine did not start; see /var/log/rpibuild-dockerd.log"

# 3. buildx: every build goes through BuildKit. Debian trixie and Ubuntu ship docker-buildx;
# on older Debian (bookworm) the trixie package is fetched alone through a temporary source
# list (signed by the archive keyring; it needs only libc6 >= 2.34), so nothing else on the
# host comes from trixie. The mirror is the host's own Debian mirror.
install_buildx_from_trixie() {
    local codename uri tmp
    codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
    # shellcheck disable=SC2016 # $(...) here is apt's own field syntax, not the shell's
    uri=$(apt-get indextargets --format '$(REPO_URI)|$(RELEASE)|$(IDENTIFIER)' \
        | awk -F'|' -v suite="$codename" '$2 == suite && $3 == "Packages" { print $1; exit }')
    [ -n "$uri" ] || die "no Debian mirror for '$codename' in the apt sources: cannot fetch docker-buildx"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
    chmod 755 "$tmp"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" >"$tmp/trixie.list"
    local apt_opts=(-o "Dir::Etc::SourceList=$tmp/trixie.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache::Archives=$tmp/archives"
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
        -o APT::Sandbox::User=root)
    apt-get -qq "${apt_opts[@]}" update
    (cd "$tmp" && apt-get -qq "${apt_opts[@]}" download docker-buildx)
    dpkg -i "$tmp"/docker-buildx_*.deb >/dev/null
}
if docker buildx version >/dev/null 2>&1; then
    log "buildx present: $(docker buildx version)"
elif apt-cache show docker-buildx >/dev/null 2>&1; then
    log "installing docker-buildx"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-buildx >/dev/null
else
    log "installing docker-buildx from Debian trixie (this release has none)"
    install_buildx_from_trixie
fi
docker buildx version >/dev/null 2>&1 || die "docker buildx does not work after installing it"

# 4. rpibuild itself (editable: configs/, dockerfiles/ and images/ are read from the checkout).
if [ "${RPIBUILD_SKIP_PIP:-0}" != 1 ]; then
    log "installing rpibuild (pip install -e .[test])"
    PIP_ROOT_USER_ACTION=ignore "$python" -m pip install -q --disable-pip-version-check -e "${here}[test]"
    "$python" -c 'import rpibuild' || die "rpibuild did not install"
fi

# 5. binfmt handlers (mounts binfmt_misc when needed).
"$python" -m rpibuild qemu install
log "ready: $("$python" -m rpibuild --version)"

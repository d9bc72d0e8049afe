#!/usr/bin/env bash
# Cross-compile a PyTorch source tree (fetch.sh's output) into a wheel for the target.
#
# Usage: build.sh [--only TARGET] SRC WORK OUT
#   SRC   the unpacked, patched source (read only; copied into WORK once)
#   WORK  a folder in a cache mount, named by the build's key: the copy of the source, CMake's
#         build folder and the wheel live here, so a build that was interrupted or failed
#         resumes where it stopped (ninja rebuilds only what is missing or out of date)
#   OUT   where the wheel is copied to
#   --only TARGET  configure, then build one CMake target (e.g. c10) and copy its library
#         to OUT instead of the wheel: the minutes-long check CI runs
#
# Environment: CROSS_TRIPLET, CROSS_DEB_ARCH (set by the cross stage), MAX_JOBS.
# The compiler runs through ccache (CCACHE_DIR, a cache mount), so even a new WORK folder
# (another patch set) recompiles only what changed. debian/rules is the reference for the
# flags; what differs is said below.
set -euo pipefail

die() {
    echo "torch-debian/build.sh: error: $*" >&2
    exit 1
}
only=
if [ "${1:-}" = --only ]; then
    only=${2:?--only needs a CMake target}
    shift 2
fi
[ "$#" -eq 3 ] || die "usage: build.sh [--only TARGET] SRC WORK OUT"
src=$1
work=$2
out=$3
triplet=${CROSS_TRIPLET:?CROSS_TRIPLET is not set (the cross stage sets it)}
case "$triplet" in
    arm-linux-gnueabihf) processor=armv7l host_platform=linux-armv7l ;;
    aarch64-linux-gnu) processor=aarch64 host_platform=linux-aarch64 ;;
    *) die "no torch cross build for $triplet" ;;
esac
command -v "$triplet-g++" >/dev/null || die "$triplet-g++ not found (crossbuild-essential)"

# One build folder per key: older ones (another version or patch set) are removed.
parent=$(dirname "$work")
mkdir -p "$parent"
for old in "$parent"/*; do
    [ "$old" = "$work" ] || [ ! -e "$old" ] || rm -rf "$old"
done
if [ ! -f "$work/.source-copied" ]; then
    rm -rf "$work"
    mkdir -p "$work"
    cp -a "$src" "$work/src"
    touch "$work/.source-copied"
else
    echo "build: resuming in $work"
fi

pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
sysconfig_name="_sysconfigdata__linux_$triplet"
[ -f "/usr/lib/python$pyver/$sysconfig_name.py" ] ||
    die "/usr/lib/python$pyver/$sysconfig_name.py missing: install libpython$pyver-dev:$CROSS_DEB_ARCH"
numpy_include="/usr/lib/$triplet/python3-numpy/numpy/_core/include"
[ -d "$numpy_include" ] || die "$numpy_include missing: install python3-numpy-dev:$CROSS_DEB_ARCH"

# No sysroot: Debian multiarch puts the target's libraries in /usr/lib/$triplet and its headers
# in /usr/include (arch-specific ones in /usr/include/$triplet), where the cross compiler looks.
cat >"$work/toolchain.cmake" <<CMAKE
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR $processor)
set(CMAKE_C_COMPILER /usr/bin/$triplet-gcc)
set(CMAKE_CXX_COMPILER /usr/bin/$triplet-g++)
set(CMAKE_C_COMPILER_LAUNCHER ccache)
set(CMAKE_CXX_COMPILER_LAUNCHER ccache)
set(CMAKE_LIBRARY_ARCHITECTURE $triplet)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig")
set(Python_INCLUDE_DIR /usr/include/python$pyver CACHE PATH "the target's (multiarch pyconfig.h)")
set(Python_NumPy_INCLUDE_DIR $numpy_include CACHE PATH "the target's numpy headers")
CMAKE

upstream_version=$(sed -n 's/^\([0-9][0-9.]*\).*/\1/p' "$work/src/version.txt" | head -n 1)
[ -n "$upstream_version" ] || die "no version in $work/src/version.txt"
export PYTORCH_BUILD_VERSION=$upstream_version PYTORCH_BUILD_NUMBER=1
export CMAKE_TOOLCHAIN_FILE="$work/toolchain.cmake" CMAKE_BUILD_TYPE=Release
# The target's sysconfig (extension suffix, compilers) and platform tag, the way Debian's own
# cross builds of Python extensions do it (dh-python sets the same two variables).
export _PYTHON_SYSCONFIGDATA_NAME=$sysconfig_name _PYTHON_HOST_PLATFORM=$host_platform
# As debian/rules: Debian's own libraries instead of the bundled third-party code.
export USE_SYSTEM_LIBS=ON ONNX_NAMESPACE=onnx BLAS=Generic GENERIC_BLAS_LIBRARIES=blas
export USE_GFLAGS=OFF USE_GLOG=OFF USE_ITT=OFF
# Off for 32-bit ARM and a Pi: no GPU toolkits, no distributed, no x86/arm64-only kernels
# (Debian itself turns XNNPACK, MKLDNN, QNNPACK off on armhf), no Kineto/Vulkan/LLVM fuser.
export USE_CUDA=OFF USE_CUDNN=OFF USE_ROCM=OFF USE_MIOPEN=OFF USE_NCCL=OFF USE_DISTRIBUTED=OFF \
    USE_MPI=OFF USE_GLOO=OFF USE_TENSORPIPE=OFF USE_MKLDNN=OFF USE_FBGEMM=OFF USE_NNPACK=OFF \
    USE_QNNPACK=OFF USE_PYTORCH_QNNPACK=OFF USE_XNNPACK=OFF USE_KINETO=OFF USE_VULKAN=OFF \
    USE_NUMA=OFF USE_MAGMA=OFF BUILD_TEST=OFF USE_LITE_INTERPRETER_PROFILER=OFF
export CXXFLAGS="-Wno-dangling-reference"
export MAX_JOBS=${MAX_JOBS:-2}
# Progress for rpibuild: ninja prefixes each step with "done/total" (its documented NINJA_STATUS).
export NINJA_STATUS="[rpibuild-ninja %f/%t] "

cd "$work/src"
echo "build: torch $upstream_version for $triplet, $MAX_JOBS jobs, ccache in ${CCACHE_DIR:-~/.ccache}"
ccache --zero-stats >/dev/null 2>&1 || true
mkdir -p "$out"
if [ -n "$only" ]; then
    python3 setup.py build --cmake-only
    cmake --build build --target "$only" -- -j "$MAX_JOBS"
    find build/lib -maxdepth 1 -name "lib$only.so*" -type f -exec cp {} "$out/" \;
    ccache --show-stats 2>/dev/null | sed 's/^/build: ccache: /' || true
    echo "build: $(find "$out" -name "lib$only.so*" -printf '%f ')"
    exit 0
fi
python3 setup.py bdist_wheel --dist-dir "$work/dist"
ccache --show-stats 2>/dev/null | sed 's/^/build: ccache: /' || true
wheel=$(find "$work/dist" -name 'torch-*.whl' -printf '%T@ %p\n' | sort -rn | head -n 1 | cut -d' ' -f2-)
[ -n "$wheel" ] || die "setup.py made no wheel in $work/dist"
cp "$wheel" "$out/"
echo "build: $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

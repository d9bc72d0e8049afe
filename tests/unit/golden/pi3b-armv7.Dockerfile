# Rendered by rpibuild 0.1.0 for profile pi3b-armv7 (linux/arm/v7).
# Do not edit: change dockerfiles/ or the profile and render again.
# Where each stage runs:
#   cross            build platform, native
#   torch-source     build platform, native
#   torch-c10        build platform, native
#   torch-install    build platform, native
#   qpulib-build     build platform, native
#   extension-build  build platform, native
#   system           linux/arm/v7 under QEMU
#   torch            linux/arm/v7 under QEMU
#   qpulib           linux/arm/v7 under QEMU
#   extension        linux/arm/v7 under QEMU
#   verify           linux/arm/v7 under QEMU
#   runtime          linux/arm/v7 under QEMU
# Each stage only COPYs what it needs, so editing the extension reruns extension, verify and
# runtime while the torch and QPULib layers stay cached. Cross build: the stages
# marked "build platform" run natively ($BUILDPLATFORM) with Debian's cross toolchain; QEMU runs
# only the target's stages (linux/arm/v7): installing, verify.

# ---- cross: runs on the build platform ($BUILDPLATFORM, native speed, no QEMU): Debian's cross
# toolchain for armhf (arm-linux-gnueabihf-g++) and the target's libraries through multiarch.
FROM --platform=$BUILDPLATFORM rpibuild/base:trixie-amd64-0d9db2ab4a272d1b AS cross
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    dpkg --add-architecture armhf \
 && apt-get update \
 && apt-get install -y --no-install-recommends crossbuild-essential-armhf ccache make python3 python3-setuptools python3-wheel python3-pip libpython3-dev:armhf \
 && update-ccache-symlinks
# ccache in front of every compiler; its files live in a cache mount (see macros.j2).
ENV PATH=/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CCACHE_DIR=/var/cache/rpibuild/ccache CCACHE_BASEDIR=/var/cache/rpibuild CCACHE_MAXSIZE=8G \
    CROSS_TRIPLET=arm-linux-gnueabihf CROSS_DEB_ARCH=armhf
COPY rpibuild/elf.py rpibuild/elf_gate.py /opt/rpibuild/

# ---- torch-source (build platform): Debian's PyTorch source package 2.6.0+dfsg-7, verified by apt
# (signed InRelease -> Sources -> .dsc) and dpkg-source (the .dsc's checksums), Debian's patch series,
# then rpibuild's (images/torch-debian/patches); the armhf libraries it builds against, via multiarch.
# rpibuild compiles the wheel in a container of this stage (images/torch-debian/compile.sh),
# its build folder and ccache in host folders under rpibuild's cache (rpibuild/torch_routes/debian_compile.py).
FROM cross AS torch-source
RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends dpkg-dev xz-utils patch cmake ninja-build pkgconf python3-dev python3-yaml python3-typing-extensions flatbuffers-compiler protobuf-compiler pybind11-dev nlohmann-json3-dev libeigen3-dev libsleef-dev:armhf libonnx-dev:armhf libprotobuf-dev:armhf libfmt-dev:armhf libcpuinfo-dev:armhf libpthreadpool-dev:armhf libfxdiv-dev:armhf libfp16-dev:armhf libpsimd-dev:armhf libflatbuffers-dev:armhf libopenblas-dev:armhf libblas-dev:armhf liblapack-dev:armhf libcpp-httplib-dev:armhf python3-numpy-dev:armhf
COPY torch-debian/fetch.sh /opt/rpibuild/src/torch-debian/fetch.sh
COPY torch-debian/patches /opt/rpibuild/src/torch-debian/patches
RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    bash /opt/rpibuild/src/torch-debian/fetch.sh pytorch 2.6.0+dfsg-7 /opt/rpibuild/src/pytorch
# After the fetch: editing the build scripts does not fetch the source again.
COPY torch-debian /opt/rpibuild/src/torch-debian

# ---- torch-c10 (build platform; a check, not part of the image): configured for armhf and one
# small library (c10) compiled and checked as a target ELF, in minutes (CI). Its build folder
# and ccache are cache mounts of its own: it never waits for, or touches, the wheel's compile.
FROM torch-source AS torch-c10
RUN --mount=type=cache,id=rpibuild-torch-c10-build-armhf,target=/var/cache/rpibuild/torch,sharing=locked --mount=type=cache,id=rpibuild-torch-c10-ccache-armhf,target=/var/cache/rpibuild/ccache,sharing=locked \
    MAX_JOBS=2 bash /opt/rpibuild/src/torch-debian/build.sh --only c10 \
      /opt/rpibuild/src/pytorch /var/cache/rpibuild/torch/d923c39c5a2f87c886d05ee7 /opt/rpibuild/c10 \
 && python3 /opt/rpibuild/elf_gate.py --elf 40:1:hf /opt/rpibuild/c10

# ---- system: the base plus what the build stages need (network settings live only here).
FROM rpibuild/base:trixie-armv7-9ec9439efe665ae0 AS system
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN --mount=type=cache,id=rpibuild-apt-archives-armhf,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-armhf,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv python3-numpy
# A venv that also sees Debian's python3-numpy (no numpy wheels exist for armv7l).
RUN --mount=type=cache,id=rpibuild-pip-armhf,target=/root/.cache/pip \
    python3 -m venv --system-site-packages /opt/rpibuild/venv \
 && /opt/rpibuild/venv/bin/pip install --upgrade 'pip>=23' wheel setuptools \
 && mkdir -p /opt/rpibuild/wheels
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- torch-install (build platform): the torch wheel checked, and installed
# with its dependencies into an overlay of the target's venv by the build platform's pip and
# CPython (images/cross/target_site.py): unzipped and byte-compiled natively, not under QEMU.
FROM cross AS torch-install
# packaging: to evaluate the wheel's dependency markers for the target, not for this machine.
RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends python3-packaging
COPY rpibuild/target_site.py /opt/rpibuild/target_site.py
# No stored wheel for key d923c39c5a2f87c886d05ee7: `rpibuild build` compiles it before this build.
RUN echo "rpibuild: the torch wheel from Debian's source (key d923c39c5a2f87c886d05ee7) is not compiled yet" >&2 && false
# The Debian packages holding the libraries the wheel links, if it carries their list (wheels
# rpibuild built from Debian's source do: images/torch-debian/wheel_packages.py).
COPY rpibuild/wheel_packages.py /opt/rpibuild/wheel_packages.py
RUN python3 /opt/rpibuild/wheel_packages.py extract /opt/rpibuild/wheels/torch-*.whl /opt/rpibuild/torch-runtime-packages.txt
# The venv has its own pip, setuptools and wheel: the overlay leaves them alone.
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip python3 /opt/rpibuild/target_site.py install --machine armv7l \
      --triplet arm-linux-gnueabihf --venv /opt/rpibuild/venv --overlay /opt/rpibuild/venv-overlay \
      --skip pip --skip setuptools --skip wheel /opt/rpibuild/wheels/torch-*.whl

# ---- torch: the installed torch copied into the venv; QEMU only imports it (a smoke test).
FROM system AS torch
COPY --from=torch-install /opt/rpibuild/wheels/ /opt/rpibuild/wheels/
COPY --from=torch-install /opt/rpibuild/torch-runtime-packages.txt /opt/rpibuild/torch-runtime-packages.txt
RUN --mount=type=cache,id=rpibuild-apt-archives-armhf,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-armhf,target=/var/lib/apt/lists,sharing=locked \
    if [ -s /opt/rpibuild/torch-runtime-packages.txt ]; then apt-get update \
      && xargs -a /opt/rpibuild/torch-runtime-packages.txt apt-get install -y --no-install-recommends; fi
COPY --from=torch-install /opt/rpibuild/venv-overlay/ /opt/rpibuild/venv/
# torch-info.json: what a cross build of an extension needs to know of this torch.
RUN python -c 'import json, torch; print("torch", torch.__version__); json.dump({"version": torch.__version__, "cxx11_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI)}, open("/opt/rpibuild/torch-info.json", "w"))'

# ---- qpulib-build (build platform): libqpu.so in qpu mode, cross-compiled by images/qpulib/build.sh
# with arm-linux-gnueabihf-g++ through ccache, then its ELF checked against the target.
FROM cross AS qpulib-build
COPY qpulib /opt/rpibuild/src/qpulib
COPY qpulib-src /opt/rpibuild/src/qpulib-src
RUN --mount=type=cache,id=rpibuild-ccache-armhf,target=/var/cache/rpibuild/ccache \
    CXX=arm-linux-gnueabihf-g++ QPULIB_COMMIT=c2658a55f2b21de6f3270c86c227011b10d447c2 bash /opt/rpibuild/src/qpulib/build.sh \
      /opt/rpibuild/src/qpulib-src /usr/local qpu \
 && python3 /opt/rpibuild/elf_gate.py --elf 40:1:hf /usr/local/lib/libqpu.so.1.0

# ---- qpulib: the cross-compiled libqpu.so installed into the target.
FROM torch AS qpulib
COPY --from=qpulib-build /usr/local/lib/libqpu.so.1.0 /usr/local/lib/
COPY --from=qpulib-build /usr/local/lib/pkgconfig/qpulib.pc /usr/local/lib/pkgconfig/
COPY --from=qpulib-build /usr/local/include/qpulib /usr/local/include/qpulib
COPY --from=qpulib-build /usr/local/share/qpulib /usr/local/share/qpulib
# QPULib's build scripts and source, as a non-cross build leaves them (the extension's tests check them).
COPY qpulib /opt/rpibuild/src/qpulib
COPY qpulib-src /opt/rpibuild/src/qpulib-src
RUN ln -sf libqpu.so.1.0 /usr/local/lib/libqpu.so.1 && ln -sf libqpu.so.1 /usr/local/lib/libqpu.so && ldconfig

# ---- extension-build (build platform): the torch_qpu wheel cross-compiled against the target's own torch
# (headers and libraries from the torch stage) and Python, tagged for armv7l; ELF checked.
FROM qpulib-build AS extension-build
# Debian's torch was built against Debian's pybind11, which its wheel does not bundle (upstream's
# wheels do): the same suite's headers.
RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends pybind11-dev
COPY --from=torch /opt/rpibuild/torch-info.json /opt/rpibuild/target/torch-info.json
COPY --from=torch /opt/rpibuild/venv/lib/python3*/site-packages/torch/include /opt/rpibuild/target/torch/include
COPY --from=torch /opt/rpibuild/venv/lib/python3*/site-packages/torch/lib /opt/rpibuild/target/torch/lib
COPY torch-qpu /opt/rpibuild/src/torch-qpu
RUN --mount=type=cache,id=rpibuild-ccache-armhf,target=/var/cache/rpibuild/ccache \
    QPULIB_PREFIX=/usr/local QPULIB_MODE=qpu TORCH_QPU_CROSS=/opt/rpibuild/target CXX=arm-linux-gnueabihf-g++ _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__linux_arm-linux-gnueabihf _PYTHON_HOST_PLATFORM=linux-armv7l \
    python3 -m pip wheel --no-deps --no-build-isolation -w /opt/rpibuild/wheels /opt/rpibuild/src/torch-qpu \
 && python3 /opt/rpibuild/elf_gate.py --elf 40:1:hf /opt/rpibuild/wheels/torch_qpu-*.whl

# ---- extension: the cross-built wheel installed into the target (QEMU runs only pip here).
FROM qpulib AS extension
COPY torch-qpu /opt/rpibuild/src/torch-qpu
COPY --from=extension-build /opt/rpibuild/wheels/ /opt/rpibuild/wheels/
RUN pip install --no-deps /opt/rpibuild/wheels/torch_qpu-*.whl

# ---- verify: runs under QEMU as the Pi's own core (cortex-a7), so an instruction the Pi lacks fails here.
FROM extension AS verify
COPY rpibuild/verify.py rpibuild/op_sweep.py rpibuild/elf.py /opt/rpibuild/
ENV QEMU_CPU=cortex-a7
RUN python /opt/rpibuild/verify.py --machine armv7l --elf 40:1:hf --torch --op-sweep --extension \
      --report /opt/rpibuild/verify.json

# ---- runtime: a fresh copy of the base with the venv and libqpu; no proxies, mirrors, CA or pip settings.
FROM rpibuild/base:trixie-armv7-9ec9439efe665ae0 AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY --from=torch /opt/rpibuild/torch-runtime-packages.txt /opt/rpibuild/torch-runtime-packages.txt
RUN --mount=type=cache,id=rpibuild-apt-archives-armhf,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-armhf,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-numpy libgomp1 \
 && xargs -r -a /opt/rpibuild/torch-runtime-packages.txt apt-get install -y --no-install-recommends
COPY --from=extension /opt/rpibuild/venv /opt/rpibuild/venv
COPY --from=extension /usr/local/lib /usr/local/lib
RUN ldconfig
COPY --from=verify /opt/rpibuild/verify.json /opt/rpibuild/verify.json
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL "org.opencontainers.image.title"="rpibuild/pi3b-armv7" "org.opencontainers.image.description"="Raspberry Pi 3B, 32-bit Debian trixie armhf (armv7), torch cross-compiled from Debian's source" "org.opencontainers.image.version"="2.6.0+dfsg-7" "io.rpibuild.version"="0.1.0" "io.rpibuild.profile"="pi3b-armv7" "io.rpibuild.platform"="linux/arm/v7" "io.rpibuild.torch.source"="debian" "io.rpibuild.torch.version"="2.6.0+dfsg-7" "io.rpibuild.qpulib.commit"="c2658a55f2b21de6f3270c86c227011b10d447c2" "io.rpibuild.qpulib.mode"="qpu" "io.rpibuild.extension"="torch-qpu"
CMD ["python"]

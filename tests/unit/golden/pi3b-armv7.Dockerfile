# Rendered by rpibuild 0.1.0 for profile pi3b-armv7 (linux/arm/v7).
# Do not edit: change dockerfiles/ or the profile and render again.
# Where each stage runs:
#   cross            build platform, native
#   torch-source     build platform, native
#   torch-c10        build platform, native
#   torch-compile    build platform, native
#   distcc-helper    build platform, native
#   torch-install    build platform, native
#   qpulib-build     build platform, native
#   extension-build  build platform, native
#   system           linux/arm/v7 under QEMU
#   torch            linux/arm/v7 under QEMU
#   qpulib           linux/arm/v7 under QEMU
#   extension        linux/arm/v7 under QEMU
#   verify-torch     linux/arm/v7 under QEMU
#   verify           linux/arm/v7 under QEMU
#   runtime          linux/arm/v7 under QEMU
# Each stage only COPYs what it needs, so editing the extension reruns extension, verify and
# runtime while the torch and QPULib layers stay cached. Cross build: the stages
# marked "build platform" run natively ($BUILDPLATFORM) with Debian's cross toolchain; QEMU runs
# only the target's stages (linux/arm/v7): installing, verify.

# ---- cross: runs on the build platform ($BUILDPLATFORM, native speed, no QEMU): Debian's cross
# toolchain for armhf (arm-linux-gnueabihf-g++) and the target's libraries through multiarch.
FROM --platform=$BUILDPLATFORM rpibuild/base:trixie-amd64-65b13f73ea7430bd AS cross
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    dpkg --add-architecture armhf \
 && apt-get update \
 && apt-get install -y --no-install-recommends crossbuild-essential-armhf ccache make python3 python3-setuptools python3-wheel python3-pip python3-venv python3-packaging libpython3-dev:armhf \
 && update-ccache-symlinks
# The target's venv, written here (it is only files: pip is pure Python, bin/python links to
# /usr/bin/python3, the same version in the same suite) and copied into the target's system
# stage, so no python runs under QEMU to make it. Before anything else is copied in here: the
# layer stays cached, and so does every target stage above it.
RUN python3 -m venv --system-site-packages /opt/rpibuild/venv \
 && mkdir -p /opt/rpibuild/skeleton/wheels \
 && mv /opt/rpibuild/venv /opt/rpibuild/skeleton/venv
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
    MAX_JOBS="$(nproc)" bash /opt/rpibuild/src/torch-debian/build.sh --only c10 \
      /opt/rpibuild/src/pytorch /var/cache/rpibuild/torch/703fe623b919c73ec270addf /opt/rpibuild/c10 \
 && python3 /opt/rpibuild/elf_gate.py --elf 40:1:hf /opt/rpibuild/c10

# ---- torch-compile (build platform): the image rpibuild's compile container runs
# (rpibuild/torch_routes/debian_compile.py): torch-source plus distcc's client, which hands compiles to
# distcc helpers when torch.distcc_hosts names some (ccache's prefix; preprocessing stays here).
# Not in the wheel's key: where and with whom the compile runs does not change the wheel.
FROM torch-source AS torch-compile
RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends distcc
COPY torch-compile /opt/rpibuild/src/torch-compile

# ---- distcc-helper (build platform): a distcc helper for the compile, with the same cross toolchain
# (arm-linux-gnueabihf-g++ from the cross stage) and distccd; run it on each helper machine
# (README, "Compiling on many machines"): `docker run ... IMAGE --allow NETWORK`.
FROM cross AS distcc-helper
RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends distcc \
 && update-distcc-symlinks
COPY torch-compile/distccd.sh /opt/rpibuild/distccd.sh
EXPOSE 3632 3633
ENTRYPOINT ["bash", "/opt/rpibuild/distccd.sh"]

# ---- system: the base (the build stages' packages bootstrapped into it) plus the venv (network settings live only here).
FROM rpibuild/base:trixie-armv7-c79d3ef9a7494fc1 AS system
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1

# The venv, written by the build platform's python of the same suite and version (cross stage):
# only files (pip is pure Python, the interpreter links to /usr/bin/python3); nothing runs here.
COPY --from=cross /opt/rpibuild/skeleton/ /opt/rpibuild/
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- torch-install (build platform): the torch wheel checked, and installed
# with its dependencies into an overlay of the target's venv by the build platform's pip and
# CPython (images/cross/target_site.py): unzipped and byte-compiled natively, not under QEMU.
FROM cross AS torch-install
COPY rpibuild/target_site.py /opt/rpibuild/target_site.py
# No stored wheel for key 703fe623b919c73ec270addf: `rpibuild build` compiles it before this build.
RUN echo "rpibuild: the torch wheel from Debian's source (key 703fe623b919c73ec270addf) is not compiled yet" >&2 && false
# The Debian packages holding the libraries the wheel links, if it carries their list (wheels
# rpibuild built from Debian's source do: images/torch-debian/wheel_packages.py).
COPY rpibuild/wheel_packages.py /opt/rpibuild/wheel_packages.py
RUN python3 /opt/rpibuild/wheel_packages.py extract /opt/rpibuild/wheels/torch-*.whl /opt/rpibuild/torch-runtime-packages.txt
# The venv has its own pip: the overlay leaves it alone (torch's other dependencies, setuptools
# among them, come with it).
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip python3 /opt/rpibuild/target_site.py install --machine armv7l \
      --triplet arm-linux-gnueabihf --venv /opt/rpibuild/venv --overlay /opt/rpibuild/venv-overlay \
      --skip pip /opt/rpibuild/wheels/torch-*.whl

# ---- torch: the installed torch copied into the venv; QEMU only imports it (a smoke test).
FROM system AS torch
COPY --from=torch-install /opt/rpibuild/wheels/ /opt/rpibuild/wheels/
COPY --from=torch-install /opt/rpibuild/torch-runtime-packages.txt /opt/rpibuild/torch-runtime-packages.txt
# The wheel's list was not known when planning (a wheel given by URL): installed here.
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
 && python3 /opt/rpibuild/elf_gate.py --elf 40:1:hf /usr/local/lib/libqpu.so.1.0 \
 && root=/opt/rpibuild/qpulib-root/usr/local && mkdir -p "$root/lib/pkgconfig" "$root/include" "$root/share" \
 && cp -a /usr/local/lib/libqpu.so.1.0 "$root/lib/" && ln -s libqpu.so.1.0 "$root/lib/libqpu.so.1" \
 && ln -s libqpu.so.1 "$root/lib/libqpu.so" && cp -a /usr/local/lib/pkgconfig/qpulib.pc "$root/lib/pkgconfig/" \
 && cp -a /usr/local/include/qpulib "$root/include/" && cp -a /usr/local/share/qpulib "$root/share/"

# ---- qpulib: the cross-compiled libqpu.so (with its links, laid out on the build platform) copied into the target.
FROM torch AS qpulib
COPY --from=qpulib-build /opt/rpibuild/qpulib-root/ /
# QPULib's build scripts and source, as a non-cross build leaves them (the extension's tests check them).
COPY qpulib /opt/rpibuild/src/qpulib
COPY qpulib-src /opt/rpibuild/src/qpulib-src
RUN ["/sbin/ldconfig"]

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
# Installed here into an overlay of the target's venv (unzipped and byte-compiled natively;
# torch and numpy are the venv's own): the target stage only copies it in.
COPY rpibuild/target_site.py /opt/rpibuild/target_site.py
RUN python3 /opt/rpibuild/target_site.py install --machine armv7l --triplet arm-linux-gnueabihf \
      --venv /opt/rpibuild/venv --overlay /opt/rpibuild/extension-overlay --no-deps /opt/rpibuild/wheels/torch_qpu-*.whl

# ---- extension: the cross-built wheel, installed on the build platform, copied into the target's venv.
FROM qpulib AS extension
COPY torch-qpu /opt/rpibuild/src/torch-qpu
COPY --from=extension-build /opt/rpibuild/wheels/ /opt/rpibuild/wheels/
COPY --from=extension-build /opt/rpibuild/extension-overlay/ /opt/rpibuild/venv/

# ---- verify-torch: torch's own checks and op sweep, under QEMU as the Pi's own core (cortex-a7).
# From the torch stage: cached until torch or the target changes, whatever happens to the extension.
FROM torch AS verify-torch
COPY rpibuild/verify.py rpibuild/op_sweep.py rpibuild/elf.py /opt/rpibuild/
ENV QEMU_CPU=cortex-a7
RUN python /opt/rpibuild/verify.py --machine armv7l --torch --op-sweep --report /opt/rpibuild/verify-torch.json

# ---- verify: the image as a whole (ABI of every shipped library, requirements, the extension), as the Pi's core.
FROM extension AS verify
COPY rpibuild/verify.py rpibuild/op_sweep.py rpibuild/elf.py /opt/rpibuild/
COPY --from=verify-torch /opt/rpibuild/verify-torch.json /opt/rpibuild/verify-torch.json
ENV QEMU_CPU=cortex-a7
RUN python /opt/rpibuild/verify.py --machine armv7l --elf 40:1:hf --extension \
      --merge /opt/rpibuild/verify-torch.json --report /opt/rpibuild/verify.json

# ---- runtime: the runtime base (its packages bootstrapped into it) with the venv and libqpu; no proxies, mirrors, CA or pip settings.
FROM rpibuild/base:trixie-armv7-c79d3ef9a7494fc1 AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY --from=torch /opt/rpibuild/torch-runtime-packages.txt /opt/rpibuild/torch-runtime-packages.txt
# Packages the torch wheel names (its list was not known when planning): installed here
# (a bootstrapped runtime base has the others already).
RUN --mount=type=cache,id=rpibuild-apt-archives-armhf,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-armhf,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && xargs -r -a /opt/rpibuild/torch-runtime-packages.txt apt-get install -y --no-install-recommends
COPY --from=extension /opt/rpibuild/venv /opt/rpibuild/venv
COPY --from=extension /usr/local/lib /usr/local/lib
RUN ["/sbin/ldconfig"]
COPY --from=verify /opt/rpibuild/verify.json /opt/rpibuild/verify.json
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL "org.opencontainers.image.title"="rpibuild/pi3b-armv7" "org.opencontainers.image.description"="Raspberry Pi 3B, 32-bit Debian trixie armhf (armv7), torch cross-compiled from Debian's source" "org.opencontainers.image.version"="2.6.0+dfsg-7" "io.rpibuild.version"="0.1.0" "io.rpibuild.profile"="pi3b-armv7" "io.rpibuild.platform"="linux/arm/v7" "io.rpibuild.torch.source"="debian" "io.rpibuild.torch.version"="2.6.0+dfsg-7" "io.rpibuild.qpulib.commit"="c2658a55f2b21de6f3270c86c227011b10d447c2" "io.rpibuild.qpulib.mode"="qpu" "io.rpibuild.extension"="torch-qpu"
CMD ["python"]

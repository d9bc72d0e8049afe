# Rendered by rpibuild 0.1.0 for profile pi3b-arm64 (linux/arm64).
# Do not edit: change dockerfiles/ or the profile and render again.
# Where each stage runs:
#   cross            build platform, native
#   torch-install    build platform, native
#   qpulib-build     build platform, native
#   extension-build  build platform, native
#   system           linux/arm64 under QEMU
#   torch            linux/arm64 under QEMU
#   qpulib           linux/arm64 under QEMU
#   extension        linux/arm64 under QEMU
#   verify-torch     linux/arm64 under QEMU
#   verify           linux/arm64 under QEMU
#   runtime          linux/arm64 under QEMU
# Each stage only COPYs what it needs, so editing the extension reruns extension, verify and
# runtime while the torch and QPULib layers stay cached. Cross build: the stages
# marked "build platform" run natively ($BUILDPLATFORM) with Debian's cross toolchain; QEMU runs
# only the target's stages (linux/arm64): installing, verify.

# ---- cross: runs on the build platform ($BUILDPLATFORM, native speed, no QEMU): Debian's cross
# toolchain for arm64 (aarch64-linux-gnu-g++) and the target's libraries through multiarch.
FROM --platform=$BUILDPLATFORM rpibuild/base:trixie-amd64-65b13f73ea7430bd AS cross
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN --mount=type=cache,id=rpibuild-apt-archives-amd64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-amd64,target=/var/lib/apt/lists,sharing=locked \
    dpkg --add-architecture arm64 \
 && apt-get update \
 && apt-get install -y --no-install-recommends crossbuild-essential-arm64 ccache make python3 python3-setuptools python3-wheel python3-pip python3-venv python3-packaging libpython3-dev:arm64 \
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
    CROSS_TRIPLET=aarch64-linux-gnu CROSS_DEB_ARCH=arm64
COPY rpibuild/elf.py rpibuild/elf_gate.py /opt/rpibuild/

# ---- system: the base (the build stages' packages bootstrapped into it) plus the venv (network settings live only here).
FROM rpibuild/base:trixie-arm64-85d8a4e4038b1ca1 AS system
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1

# The venv, written by the build platform's python of the same suite and version (cross stage):
# only files (pip is pure Python, the interpreter links to /usr/bin/python3); nothing runs here.
COPY --from=cross /opt/rpibuild/skeleton/ /opt/rpibuild/
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- torch-install (build platform): the torch wheel chosen by the target's tags, checked, and installed
# with its dependencies into an overlay of the target's venv by the build platform's pip and
# CPython (images/cross/target_site.py): unzipped and byte-compiled natively, not under QEMU.
FROM cross AS torch-install
COPY rpibuild/target_site.py /opt/rpibuild/target_site.py
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip python3 /opt/rpibuild/target_site.py download --machine aarch64 \
      --dest /opt/rpibuild/wheels torch==2.9.1
RUN cd /opt/rpibuild/wheels && echo 'c29455d2b910b98738131990394da3e50eea8291dfeb4b12de71ecf1fdeb21cb  '"$(ls torch-*.whl)" | sha256sum -c -
# The venv has its own pip: the overlay leaves it alone (torch's other dependencies, setuptools
# among them, come with it).
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip python3 /opt/rpibuild/target_site.py install --machine aarch64 \
      --triplet aarch64-linux-gnu --venv /opt/rpibuild/venv --overlay /opt/rpibuild/venv-overlay \
      --skip pip /opt/rpibuild/wheels/torch-*.whl

# ---- torch: the installed torch copied into the venv; QEMU only imports it (a smoke test).
FROM system AS torch
COPY --from=torch-install /opt/rpibuild/wheels/ /opt/rpibuild/wheels/
COPY --from=torch-install /opt/rpibuild/venv-overlay/ /opt/rpibuild/venv/
# torch-info.json: what a cross build of an extension needs to know of this torch.
RUN python -c 'import json, torch; print("torch", torch.__version__); json.dump({"version": torch.__version__, "cxx11_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI)}, open("/opt/rpibuild/torch-info.json", "w"))'

# ---- qpulib-build (build platform): libqpu.so in qpu mode, cross-compiled by images/qpulib/build.sh
# with aarch64-linux-gnu-g++ through ccache, then its ELF checked against the target.
FROM cross AS qpulib-build
COPY qpulib /opt/rpibuild/src/qpulib
COPY qpulib-src /opt/rpibuild/src/qpulib-src
RUN --mount=type=cache,id=rpibuild-ccache-arm64,target=/var/cache/rpibuild/ccache \
    CXX=aarch64-linux-gnu-g++ QPULIB_COMMIT=c2658a55f2b21de6f3270c86c227011b10d447c2 bash /opt/rpibuild/src/qpulib/build.sh \
      /opt/rpibuild/src/qpulib-src /usr/local qpu \
 && python3 /opt/rpibuild/elf_gate.py --elf 183:2 /usr/local/lib/libqpu.so.1.0 \
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
# (headers and libraries from the torch stage) and Python, tagged for aarch64; ELF checked.
FROM qpulib-build AS extension-build
COPY --from=torch /opt/rpibuild/torch-info.json /opt/rpibuild/target/torch-info.json
COPY --from=torch /opt/rpibuild/venv/lib/python3*/site-packages/torch/include /opt/rpibuild/target/torch/include
COPY --from=torch /opt/rpibuild/venv/lib/python3*/site-packages/torch/lib /opt/rpibuild/target/torch/lib
COPY torch-qpu /opt/rpibuild/src/torch-qpu
RUN --mount=type=cache,id=rpibuild-ccache-arm64,target=/var/cache/rpibuild/ccache \
    QPULIB_PREFIX=/usr/local QPULIB_MODE=qpu TORCH_QPU_CROSS=/opt/rpibuild/target CXX=aarch64-linux-gnu-g++ _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__linux_aarch64-linux-gnu _PYTHON_HOST_PLATFORM=linux-aarch64 \
    python3 -m pip wheel --no-deps --no-build-isolation -w /opt/rpibuild/wheels /opt/rpibuild/src/torch-qpu \
 && python3 /opt/rpibuild/elf_gate.py --elf 183:2 /opt/rpibuild/wheels/torch_qpu-*.whl
# Installed here into an overlay of the target's venv (unzipped and byte-compiled natively;
# torch and numpy are the venv's own): the target stage only copies it in.
COPY rpibuild/target_site.py /opt/rpibuild/target_site.py
RUN python3 /opt/rpibuild/target_site.py install --machine aarch64 --triplet aarch64-linux-gnu \
      --venv /opt/rpibuild/venv --overlay /opt/rpibuild/extension-overlay --no-deps /opt/rpibuild/wheels/torch_qpu-*.whl

# ---- extension: the cross-built wheel, installed on the build platform, copied into the target's venv.
FROM qpulib AS extension
COPY torch-qpu /opt/rpibuild/src/torch-qpu
COPY --from=extension-build /opt/rpibuild/wheels/ /opt/rpibuild/wheels/
COPY --from=extension-build /opt/rpibuild/extension-overlay/ /opt/rpibuild/venv/

# ---- verify-torch: torch's own checks and op sweep, under QEMU as the Pi's own core (cortex-a53).
# From the torch stage: cached until torch or the target changes, whatever happens to the extension.
FROM torch AS verify-torch
COPY rpibuild/verify.py rpibuild/op_sweep.py rpibuild/elf.py /opt/rpibuild/
ENV QEMU_CPU=cortex-a53
RUN python /opt/rpibuild/verify.py --machine aarch64 --torch --op-sweep --report /opt/rpibuild/verify-torch.json

# ---- verify: the image as a whole (ABI of every shipped library, requirements, the extension), as the Pi's core.
FROM extension AS verify
COPY rpibuild/verify.py rpibuild/op_sweep.py rpibuild/elf.py /opt/rpibuild/
COPY --from=verify-torch /opt/rpibuild/verify-torch.json /opt/rpibuild/verify-torch.json
ENV QEMU_CPU=cortex-a53
RUN python /opt/rpibuild/verify.py --machine aarch64 --elf 183:2 --extension \
      --merge /opt/rpibuild/verify-torch.json --report /opt/rpibuild/verify.json

# ---- runtime: the runtime base (its packages bootstrapped into it) with the venv and libqpu; no proxies, mirrors, CA or pip settings.
FROM rpibuild/base:trixie-arm64-85d8a4e4038b1ca1 AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY --from=extension /opt/rpibuild/venv /opt/rpibuild/venv
COPY --from=extension /usr/local/lib /usr/local/lib
RUN ["/sbin/ldconfig"]
COPY --from=verify /opt/rpibuild/verify.json /opt/rpibuild/verify.json
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL "org.opencontainers.image.title"="rpibuild/pi3b-arm64" "org.opencontainers.image.description"="Raspberry Pi 3B (Cortex-A53), 64-bit Debian trixie, official torch aarch64 wheel" "org.opencontainers.image.version"="2.9.1" "io.rpibuild.version"="0.1.0" "io.rpibuild.profile"="pi3b-arm64" "io.rpibuild.platform"="linux/arm64" "io.rpibuild.torch.source"="pypi" "io.rpibuild.torch.version"="2.9.1" "io.rpibuild.qpulib.commit"="c2658a55f2b21de6f3270c86c227011b10d447c2" "io.rpibuild.qpulib.mode"="qpu" "io.rpibuild.extension"="torch-qpu"
CMD ["python"]

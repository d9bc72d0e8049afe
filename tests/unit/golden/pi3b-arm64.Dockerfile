# Rendered by rpibuild 0.1.0 for profile pi3b-arm64 (linux/arm64).
# Do not edit: change dockerfiles/ or the profile and render again.
# Stages run in this order; each one only COPYs what it needs, so editing the extension
# reruns extension, verify and runtime while the torch and QPULib layers stay cached.
# ---- system: the base plus what the build stages need (network settings live only here).
FROM rpibuild/base:bookworm-arm64-97902dfe44360148 AS system
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=cache,id=rpibuild-apt-archives-arm64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-arm64,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-dev python3-venv python3-numpy g++ make
# A venv that also sees Debian's python3-numpy (no numpy wheels exist for armv7l).
RUN --mount=type=cache,id=rpibuild-pip-arm64,target=/root/.cache/pip \
    python3 -m venv --system-site-packages /opt/rpibuild/venv \
 && /opt/rpibuild/venv/bin/pip install --upgrade 'pip>=23' wheel setuptools \
 && mkdir -p /opt/rpibuild/wheels
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- torch: source pypi 2.5.1.
FROM system AS torch
RUN --mount=type=cache,id=rpibuild-pip-arm64,target=/root/.cache/pip pip download --no-deps --only-binary=:all: -d /opt/rpibuild/wheels torch==2.5.1
RUN cd /opt/rpibuild/wheels && echo '340ce0432cad0d37f5a31be666896e16788f1adf8ad7be481196b503dad675b9  '"$(ls torch-*.whl)" | sha256sum -c -
RUN --mount=type=cache,id=rpibuild-pip-arm64,target=/root/.cache/pip pip install /opt/rpibuild/wheels/torch-*.whl \
 && python -c 'import torch; print("torch", torch.__version__)'

# ---- qpulib: libqpu.so in qpu mode, built by images/qpulib/build.sh.
FROM torch AS qpulib
COPY qpulib /opt/rpibuild/src/qpulib
COPY qpulib-src /opt/rpibuild/src/qpulib-src
RUN QPULIB_COMMIT=c2658a55f2b21de6f3270c86c227011b10d447c2 bash /opt/rpibuild/src/qpulib/build.sh \
      /opt/rpibuild/src/qpulib-src /usr/local qpu \
 && ldconfig

# ---- extension: the torch_qpu wheel, built against this image's torch and libqpu.
FROM qpulib AS extension
COPY torch-qpu /opt/rpibuild/src/torch-qpu
RUN QPULIB_PREFIX=/usr/local QPULIB_MODE=qpu pip wheel --no-deps --no-build-isolation \
      -w /opt/rpibuild/wheels /opt/rpibuild/src/torch-qpu \
 && pip install --no-deps /opt/rpibuild/wheels/torch_qpu-*.whl

# ---- verify: runs under QEMU as the Pi's own core (cortex-a53), so an instruction the Pi lacks fails here.
FROM extension AS verify
COPY rpibuild/verify.py /opt/rpibuild/verify.py
ENV QEMU_CPU=cortex-a53
RUN python /opt/rpibuild/verify.py --machine aarch64 --elf 183:2 --torch --extension \
      --report /opt/rpibuild/verify.json

# ---- runtime: a fresh copy of the base with the venv and libqpu; no proxies, mirrors, CA or pip settings.
FROM rpibuild/base:bookworm-arm64-97902dfe44360148 AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN --mount=type=cache,id=rpibuild-apt-archives-arm64,target=/var/cache/apt,sharing=locked --mount=type=cache,id=rpibuild-apt-lists-arm64,target=/var/lib/apt/lists,sharing=locked \
    apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-numpy libgomp1
COPY --from=extension /opt/rpibuild/venv /opt/rpibuild/venv
COPY --from=extension /usr/local/lib /usr/local/lib
RUN ldconfig
COPY --from=verify /opt/rpibuild/verify.json /opt/rpibuild/verify.json
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL "org.opencontainers.image.title"="rpibuild/pi3b-arm64" "org.opencontainers.image.description"="Raspberry Pi 3B (Cortex-A53), 64-bit Debian bookworm, official torch aarch64 wheel" "org.opencontainers.image.version"="2.5.1" "io.rpibuild.version"="0.1.0" "io.rpibuild.profile"="pi3b-arm64" "io.rpibuild.platform"="linux/arm64" "io.rpibuild.torch.source"="pypi" "io.rpibuild.torch.version"="2.5.1" "io.rpibuild.qpulib.commit"="c2658a55f2b21de6f3270c86c227011b10d447c2" "io.rpibuild.qpulib.mode"="qpu" "io.rpibuild.extension"="torch-qpu"
CMD ["python"]

# Rendered by rpibuild 0.1.0 for profile host-emulator (linux/amd64).
# Do not edit: change dockerfiles/ or the profile and render again.
# Where each stage runs:
#   system           linux/amd64
#   torch            linux/amd64
#   qpulib           linux/amd64
#   extension        linux/amd64
#   verify-torch     linux/amd64
#   verify           linux/amd64
#   runtime          linux/amd64
# Each stage only COPYs what it needs, so editing the extension reruns extension, verify and
# runtime while the torch and QPULib layers stay cached. Every stage runs natively as linux/amd64: no emulation, nothing to cross-compile.

# ---- system: the base (the build stages' packages bootstrapped into it) plus the venv (network settings live only here).
FROM rpibuild/base:trixie-amd64-b1230cbca914e937 AS system
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1

# A venv that also sees Debian's python3-numpy (no numpy wheels exist for armv7l), with
# the pip, wheel and setuptools the target's own builds need.
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip \
    python3 -m venv --system-site-packages /opt/rpibuild/venv \
 && /opt/rpibuild/venv/bin/pip install --upgrade 'pip>=23' wheel setuptools \
 && mkdir -p /opt/rpibuild/wheels
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# ---- torch: source pypi 2.9.1.
FROM system AS torch
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip pip download --no-deps --only-binary=:all: -d /opt/rpibuild/wheels torch==2.9.1
# torch-info.json: what a cross build of an extension needs to know of this torch.
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip pip install /opt/rpibuild/wheels/torch-*.whl \
 && python -c 'import json, torch; print("torch", torch.__version__); json.dump({"version": torch.__version__, "cxx11_abi": int(torch._C._GLIBCXX_USE_CXX11_ABI)}, open("/opt/rpibuild/torch-info.json", "w"))'

# ---- qpulib: libqpu.so in emulation mode, built by images/qpulib/build.sh.
FROM torch AS qpulib
COPY qpulib /opt/rpibuild/src/qpulib
COPY qpulib-src /opt/rpibuild/src/qpulib-src
RUN QPULIB_COMMIT=c2658a55f2b21de6f3270c86c227011b10d447c2 bash /opt/rpibuild/src/qpulib/build.sh \
      /opt/rpibuild/src/qpulib-src /usr/local emulation \
 && ldconfig

# ---- extension: the torch_qpu wheel, built against this image's torch and libqpu.
FROM qpulib AS extension
COPY torch-qpu /opt/rpibuild/src/torch-qpu
RUN QPULIB_PREFIX=/usr/local QPULIB_MODE=emulation pip wheel --no-deps --no-build-isolation \
      -w /opt/rpibuild/wheels /opt/rpibuild/src/torch-qpu \
 && pip install --no-deps /opt/rpibuild/wheels/torch_qpu-*.whl

# ---- verify-torch: torch's own checks and op sweep, under QEMU as the Pi's own core.
# From the torch stage: cached until torch or the target changes, whatever happens to the extension.
FROM torch AS verify-torch
COPY rpibuild/verify.py rpibuild/op_sweep.py rpibuild/elf.py /opt/rpibuild/
RUN python /opt/rpibuild/verify.py --machine x86_64 --torch --op-sweep --report /opt/rpibuild/verify-torch.json

# ---- verify: the image as a whole (ABI of every shipped library, requirements, the extension), as the Pi's core.
FROM extension AS verify
COPY rpibuild/verify.py rpibuild/op_sweep.py rpibuild/elf.py /opt/rpibuild/
COPY --from=verify-torch /opt/rpibuild/verify-torch.json /opt/rpibuild/verify-torch.json
RUN --mount=type=cache,id=rpibuild-pip-amd64,target=/root/.cache/pip pip install pytest hypothesis
RUN python /opt/rpibuild/verify.py --machine x86_64 --elf 62:2 --extension --emulator-tests /opt/rpibuild/src/torch-qpu/tests \
      --merge /opt/rpibuild/verify-torch.json --report /opt/rpibuild/verify.json

# ---- runtime: the runtime base (its packages bootstrapped into it) with the venv and libqpu; no proxies, mirrors, CA or pip settings.
FROM rpibuild/base:trixie-amd64-1f9cbf6af0a31b63 AS runtime
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
COPY --from=extension /opt/rpibuild/venv /opt/rpibuild/venv
COPY --from=extension /usr/local/lib /usr/local/lib
COPY --from=extension /usr/local/include /usr/local/include
RUN ["/sbin/ldconfig"]
COPY --from=verify /opt/rpibuild/verify.json /opt/rpibuild/verify.json
ENV VIRTUAL_ENV=/opt/rpibuild/venv PATH=/opt/rpibuild/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL "org.opencontainers.image.title"="rpibuild/host-emulator" "org.opencontainers.image.description"="x86_64 development image, QPULib emulation mode" "org.opencontainers.image.version"="2.9.1" "io.rpibuild.version"="0.1.0" "io.rpibuild.profile"="host-emulator" "io.rpibuild.platform"="linux/amd64" "io.rpibuild.torch.source"="pypi" "io.rpibuild.torch.version"="2.9.1" "io.rpibuild.qpulib.commit"="c2658a55f2b21de6f3270c86c227011b10d447c2" "io.rpibuild.qpulib.mode"="emulation" "io.rpibuild.extension"="torch-qpu"
CMD ["python"]

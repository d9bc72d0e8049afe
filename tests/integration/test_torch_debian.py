"""torch from Debian's source (torch.source: debian), the parts CI can afford: minutes, not hours.

Real archive, real signature and checksum checks, real cross toolchain: the source is fetched
and verified, Debian's and rpibuild's patches applied, the tree configured for armhf and one
small library of it (c10) cross-compiled and checked as an ARM hard-float ELF. The full wheel
(hours) is built outside CI; its figures are in the README.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rpibuild.engine import Engine
from rpibuild.export.elf import read_header
from rpibuild.resources import images_dir

pytestmark = pytest.mark.integration
ARMV7 = ["-p", "pi3b-armv7", "--set", "qpulib.enabled=false", "--set", "extension.enabled=false"]


def rpibuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpibuild", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def c10_image(engine: Engine) -> str:
    result = rpibuild("build", *ARMV7, "--target", "torch-c10", "--json")
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)["id"]


def test_c10_is_cross_compiled_as_an_arm_hard_float_library(
    engine: Engine, c10_image: str, tmp_path: Path
) -> None:
    image = engine.image(c10_image)
    assert image is not None and image.platform == "linux/amd64"  # a build-platform stage
    code, listing = engine.run(c10_image, ["sh", "-c", "ls /opt/rpibuild/c10"])
    assert code == 0 and "libc10.so" in listing, listing
    # build.sh copies the library file itself (libc10.so.<version>), not its symlinks.
    script = 'set -e; for f in /opt/rpibuild/c10/libc10.so*; do head -c 64 "$f" | base64 -w0; break; done'
    code, encoded = engine.run(c10_image, ["sh", "-c", script])
    assert code == 0, encoded
    library = tmp_path / "libc10.so"
    library.write_bytes(base64.b64decode(encoded.strip()))
    header = read_header(library)
    assert header is not None
    assert (header.machine_name, header.bits, header.float_abi) == ("ARM", 32, "hard")


def test_the_source_is_debians_with_every_patch_applied(engine: Engine, c10_image: str) -> None:
    series = (images_dir() / "torch-debian" / "patches" / "series").read_text().splitlines()
    ours = [line.split()[0] for line in series if line.strip() and not line.startswith("#")]
    script = (
        "head -n 1 /opt/rpibuild/src/pytorch/debian/changelog; "
        "grep -c . /opt/rpibuild/src/pytorch/debian/patches/series; "
        # Each of rpibuild's patches is in the tree: it reverses cleanly.
        "for p in " + " ".join(ours) + "; do "
        "patch -d /opt/rpibuild/src/pytorch -p1 -R --dry-run -s "
        "< /opt/rpibuild/src/torch-debian/patches/$p && echo applied:$p; done; true"
    )
    code, output = engine.run(c10_image, ["sh", "-c", script])
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("pytorch (2.6.0+dfsg-7)")
    assert int(lines[1]) > 5  # Debian's own patch series was applied
    assert [line.removeprefix("applied:") for line in lines[2:]] == ours


def test_a_tampered_or_truncated_download_is_refused(engine: Engine, c10_image: str) -> None:
    """apt fetches the files against the signed index; dpkg-source checks them against the .dsc."""
    script = (
        "set -e; apt-get update -qq; mkdir /tmp/src && cd /tmp/src; "
        "apt-get source -qq --download-only pytorch=2.6.0+dfsg-7 2>/dev/null; "
        "cp -a /tmp/src /tmp/flipped; "
        "truncate -s -4096 *.debian.tar.xz; "
        "if bash /opt/rpibuild/src/torch-debian/fetch.sh --unpack pytorch_2.6.0+dfsg-7.dsc /tmp/a 2>&1; "
        "then echo UNPACKED-TRUNCATED; fi; "
        "cd /tmp/flipped; "
        "printf 'X' | dd of=pytorch_2.6.0+dfsg.orig.tar.xz bs=1 seek=1000000 conv=notrunc 2>/dev/null; "
        "if bash /opt/rpibuild/src/torch-debian/fetch.sh --unpack pytorch_2.6.0+dfsg-7.dsc /tmp/b 2>&1; "
        "then echo UNPACKED-FLIPPED; fi; echo DONE"
    )
    code, output = engine.run(c10_image, ["bash", "-c", script])
    assert code == 0, output[-3000:]
    assert output.rstrip().endswith("DONE"), output[-3000:]
    assert "UNPACKED" not in output
    assert output.count("failed its checks: not unpacked") == 2
    assert "checksum" in output.lower()


def test_a_version_not_in_the_archive_names_the_versions_that_are() -> None:
    result = rpibuild("build", *ARMV7, "--set", "torch.version=2.6.0+dfsg-99", "--target", "torch-source")
    assert result.returncode == 5, result.stderr[-3000:]
    assert "pytorch 2.6.0+dfsg-99 is not in this suite's archive" in result.stderr
    assert "2.6.0+dfsg-7" in result.stderr
    assert "Traceback" not in result.stderr


def test_runtime_packages_come_from_elf_needed_with_the_cross_runtime_mapped(
    engine: Engine, c10_image: str
) -> None:
    """libgomp comes with the cross compiler (libgomp1-armhf-cross, /usr/<triplet>/lib): the
    Pi needs the target's own libgomp1; libc.so.6 is the target's libc6 (multiarch)."""
    script = (
        "set -e; cd /tmp; "
        "printf 'int f(int *v, int n) {\\n#pragma omp parallel for\\nfor (int i = 0; i < n; i++) v[i] = i;\\n"
        "return 0; }\\n' > f.c; "
        '"$CROSS_TRIPLET-gcc" -fopenmp -shared -fPIC f.c -o libf.so; '
        "python3 /opt/rpibuild/src/torch-debian/runtime_packages.py libf.so"
    )
    code, output = engine.run(c10_image, ["sh", "-c", script])
    assert code == 0, output
    assert output.split() == ["libc6", "libgomp1"]


def test_a_gathered_mirror_folder_supplies_the_source_and_a_tampered_one_is_refused(
    engine: Engine, c10_image: str, tmp_path: Path
) -> None:
    """`sources fetch --all` puts Debian's pytorch source in DIR/debian/ with the suite's signed
    InRelease and Sources index; a build with RPIBUILD_SOURCE_MIRROR=DIR fetches it from there
    (apt sees no other source), and a .dsc changed in the folder fails apt's checks."""
    import os
    import shutil

    folder = tmp_path / "mirror"
    gathered = rpibuild("sources", "fetch", "--all", *ARMV7, "-o", str(folder), "--json")
    assert gathered.returncode == 0, gathered.stderr[-3000:]
    archive = folder / "debian"
    assert (archive / "dists/trixie/InRelease").read_text().startswith("-----BEGIN PGP SIGNED MESSAGE")
    assert (archive / "dists/trixie/main/source/Sources.xz").is_file()
    (dsc,) = (archive / "pool/main/p/pytorch").glob("pytorch_*.dsc")
    assert any(name.startswith("debian/") for name in json.loads(gathered.stdout)["archives"])

    def build_source(mirror: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "RPIBUILD_SOURCE_MIRROR": f"file://{mirror}"}
        return subprocess.run(
            [sys.executable, "-m", "rpibuild", "build", *ARMV7, "--target", "torch-source", "--json"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )

    # BuildKit keys the fetch step by the mounted folder's content: a file of this run's own
    # makes the folder new to it, so the fetch runs here rather than coming from the cache of
    # an earlier run (apt ignores files outside dists/ and pool/).
    (archive / "rpibuild-test-run").write_text(str(tmp_path), encoding="utf-8")
    built = build_source(folder)
    assert built.returncode == 0, built.stderr[-4000:]
    log = Path(json.loads(built.stdout)["log_file"]).read_text()
    assert "fetch: source packages from the gathered archive" in log
    assert "fetch: /opt/rpibuild/src/pytorch ready" in log

    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    bad = tampered / "debian/pool/main/p/pytorch" / dsc.name
    bad.write_text(bad.read_text() + "\n")
    refused = build_source(tampered)
    assert refused.returncode == 5, refused.stderr[-3000:]
    assert "Hash Sum mismatch" in refused.stderr or "Size mismatch" in refused.stderr, refused.stderr[-3000:]


class ForwardingMirror:
    """An apt mirror on the engine's bridge: each GET goes to the first of the base's own
    archives that has the path; every path asked for is recorded."""

    def __init__(self, address: str, upstreams: list[str]) -> None:
        import http.server
        import shutil
        import threading
        import urllib.error
        import urllib.parse
        import urllib.request

        asked: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                asked.append(urllib.parse.unquote(self.path))
                for upstream in upstreams:
                    try:
                        with urllib.request.urlopen(upstream + self.path, timeout=60) as answer:
                            self.send_response(200)
                            self.send_header("Content-Length", answer.headers["Content-Length"])
                            self.end_headers()
                            shutil.copyfileobj(answer, self.wfile)
                            return
                    except urllib.error.HTTPError as err:
                        if err.code != 404:
                            break
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.asked = asked
        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_gather_reaches_debian_through_the_apt_mirror_setting(engine: Engine, tmp_path: Path) -> None:
    """network.apt_mirror applies to `sources fetch --all`'s gather as to a build: apt asks the
    mirror (here a forwarding one on the engine's bridge) for the signed indexes and the source
    package, and what it gathers still passes apt's checks."""
    import re

    from rpibuild.build.base import ensure_base
    from rpibuild.config import load_profile
    from rpibuild.host.build_platform import cross_base_profile

    profile = load_profile("pi3b-armv7", ["qpulib.enabled=false", "extension.enabled=false"], env={}).profile
    helper = ensure_base(cross_base_profile(profile), engine).image  # where the gather runs
    _, lists = engine.run(helper, ["sh", "-c", "cat /etc/apt/sources.list /etc/apt/sources.list.d/*"])
    upstreams = list(dict.fromkeys(re.findall(r"https?://[^ ]+", lists)))
    assert upstreams, lists
    bridge = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    gateway = json.loads(bridge.stdout)[0]["Gateway"]  # where a container reaches this host
    mirror = ForwardingMirror(gateway, upstreams)
    try:
        folder = tmp_path / "mirror"
        setting = f"network.apt_mirror={mirror.url}"
        gathered = rpibuild("sources", "fetch", "--all", *ARMV7, "--set", setting, "-o", str(folder))
    finally:
        mirror.close()
    assert gathered.returncode == 0, gathered.stderr[-3000:]
    assert "/dists/trixie/InRelease" in mirror.asked, mirror.asked
    (dsc,) = (folder / "debian/pool/main/p/pytorch").glob("pytorch_*.dsc")
    assert f"/pool/main/p/pytorch/{dsc.name}" in mirror.asked
    assert "/dists/trixie/main/source/Sources.xz" in mirror.asked

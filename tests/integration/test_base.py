"""Base images: bootstrapped with true platform metadata, content-addressed, failing cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rpibuild.build.base import BaseImage, base_reference, ensure_base
from rpibuild.config import LoadedProfile, load_profile
from rpibuild.engine import DockerEngine, Engine
from rpibuild.errors import BuildError
from rpibuild.planning.plan import make_plan


def test_bootstrapped_base_has_true_platform_metadata(engine: Engine, armhf_base: BaseImage) -> None:
    info = engine.image(armhf_base.image)
    assert info is not None
    assert (info.os, info.architecture, info.variant) == ("linux", "arm", "v7")
    assert armhf_base.platform == "linux/arm/v7"
    inspect = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", armhf_base.image], capture_output=True, check=True
        ).stdout
    )[0]
    assert (inspect["Os"], inspect["Architecture"], inspect["Variant"]) == ("linux", "arm", "v7")
    code, output = engine.run(armhf_base.image, ["sh", "-c", "ls /var/cache/apt/archives/*.deb"])
    assert code != 0, f"package cache was baked in: {output}"


def test_second_run_is_a_cache_hit(
    engine: Engine, armhf_profile: LoadedProfile, armhf_base: BaseImage
) -> None:
    again = ensure_base(armhf_profile.profile, engine)
    assert again.cached is True
    assert again.id == armhf_base.id
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild", "base", "-p", str(armhf_profile.path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(result.stdout)
    assert data == {
        "image": armhf_base.image,
        "id": armhf_base.id,
        "platform": "linux/arm/v7",
        "cached": True,
    }


def test_changed_package_list_is_a_different_base(armhf_profile: LoadedProfile) -> None:
    changed = load_profile(armhf_profile.path, ["base.bootstrap.packages=[python3]"], env={})
    assert base_reference(changed.profile) != base_reference(armhf_profile.profile)


def test_bad_suite_fails_cleanly(engine: Engine, armhf_profile: LoadedProfile, tmp_path: Path) -> None:
    bad = load_profile(armhf_profile.path, ["base.bootstrap.suite=nosuchsuite"], env={}).profile
    cache = Path(__import__("os").environ["RPIBUILD_CACHE"])
    with pytest.raises(BuildError) as info:
        ensure_base(bad, engine)
    assert info.value.stage == "base"
    assert info.value.log_tail, "the log tail is shown"
    assert info.value.log_file and Path(info.value.log_file).is_file()
    assert info.value.hint and "suite" in info.value.hint
    assert engine.image(base_reference(bad)) is None, "no half-made image"
    assert not list((cache / "tmp").iterdir()), "temporary folders removed"


def test_bad_suite_from_the_cli_shows_the_log_tail(armhf_profile: LoadedProfile) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rpibuild",
            "base",
            "-p",
            str(armhf_profile.path),
            "--set",
            "base.bootstrap.suite=nosuchsuite",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 5
    assert "mmdebstrap failed" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_package_the_suite_does_not_have_fails_the_bootstrap_naming_it(
    engine: Engine, armhf_profile: LoadedProfile
) -> None:
    """apt.packages are folded into the base: a name the suite lacks fails there (apt solves
    natively, in seconds), named, exit 5 as the README's table says, and nothing is tagged."""
    overrides = ["apt.packages=[python3,no-such-package-rpibuild]"]
    folded = make_plan(load_profile(armhf_profile.path, overrides, env={}).profile).base_profiles.build
    result = subprocess.run(
        [sys.executable, "-m", "rpibuild", "build", "-p", str(armhf_profile.path), "--set", overrides[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 5, result.stderr
    assert "package 'no-such-package-rpibuild' is not in bookworm" in result.stderr
    assert "apt.packages" in result.stderr  # where to fix it
    assert "Traceback" not in result.stderr
    assert engine.image(base_reference(folded)) is None, "no base was tagged"
    tags = subprocess.run(
        ["docker", "images", "-q", "rpibuild-test/armhf-minimal"], capture_output=True, text=True
    )
    assert tags.stdout.strip() == "", "no image was tagged"


def test_bootstrap_in_a_helper_container_when_the_host_has_no_debootstrap(
    engine: Engine, armhf_profile: LoadedProfile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper image is an amd64 Debian base bootstrapped here (no image hub is reachable)."""
    helper_profile = load_profile(
        armhf_profile.path, ["platform=linux/amd64", "image.repository=rpibuild-test/helper"], env={}
    ).profile
    helper = ensure_base(helper_profile, engine)
    target = load_profile(armhf_profile.path, ["base.bootstrap.packages=[hostname]"], env={}).profile
    monkeypatch.setenv("RPIBUILD_DEBOOTSTRAP", "container")
    monkeypatch.setenv("RPIBUILD_HELPER_IMAGE", helper.image)
    before = {c.id for c in engine.client.containers.list(all=True)}
    try:
        made = ensure_base(target, engine, refresh=True)
        assert made.cached is False and made.platform == "linux/arm/v7"
        code, output = engine.run(made.image, ["uname", "-m"])
        assert (code, output.strip()) == (0, "armv7l")
        assert {c.id for c in engine.client.containers.list(all=True)} <= before
    finally:
        engine.remove_image(base_reference(target), force=True)
        engine.remove_image(helper.image, force=True)


def test_ctrl_c_during_bootstrap_leaves_no_image_and_no_temporary_folder(
    armhf_profile: LoadedProfile,
) -> None:
    import os
    import signal

    overrides = ["--set", "base.bootstrap.packages=[file]"]  # a base nobody has built yet
    target = load_profile(armhf_profile.path, [o for o in overrides if o != "--set"], env={}).profile
    engine = DockerEngine.connect()
    engine.remove_image(base_reference(target), force=True)  # a run that was not interrupted made it
    process = subprocess.Popen(
        [sys.executable, "-m", "rpibuild", "-v", "base", "-p", str(armhf_profile.path), *overrides],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        # mmdebstrap's phases (debootstrap said "Retrieving"/"Validating"): downloading has begun.
        if "downloading packages" in line or "Retrieving" in line:
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    assert engine.image(base_reference(target)) is None
    cache = Path(os.environ["RPIBUILD_CACHE"])
    assert not list((cache / "tmp").iterdir())
    assert str(cache) not in Path("/proc/mounts").read_text()


# Run in the bootstrapped arm64 base under QEMU: every byte-compiled file the finisher wrote is
# one the target's interpreter accepts as current (PEP 552 header: its magic number, timestamp
# mode, the source's mtime and size), and every stdlib module the packages own has one.
_PYC_CHECK = r"""
import importlib.util, json, os, struct, sys
lib = f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}"
owned = set()
for name in os.listdir("/var/lib/dpkg/info"):
    if name.startswith("libpython3") and name.endswith(".list"):
        paths = open("/var/lib/dpkg/info/" + name).read().split()
        owned |= {p for p in paths if p.startswith(lib + "/") and p.endswith(".py")}
bad, missing = [], []
for source in sorted(owned):
    cached = importlib.util.cache_from_source(source)
    if not os.path.exists(cached):
        missing.append(source)
        continue
    head = open(cached, "rb").read(16)
    magic, flags, mtime, size = head[:4], *struct.unpack("<3I", head[4:16])
    st = os.stat(source)
    want = (importlib.util.MAGIC_NUMBER, 0, int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    if (magic, flags, mtime, size) != want:
        bad.append(source)
interpreter = open(os.path.realpath(sys.executable), "rb").read(4)
elf = interpreter == b"\x7fELF"
print(json.dumps({"owned": len(owned), "bad": bad[:5], "missing": missing[:5], "elf": elf}))
"""


def test_a_foreign_base_is_finished_on_the_build_platform_as_its_own_scripts_would(engine: Engine) -> None:
    """The default profile's arm64 base (mmdebstrap, byte-compiling and the CA bundle deferred
    to the build platform, rpibuild.build.base_finish): its Python byte code and CA bundle are
    what the target's own maintainer scripts write, and no stand-in or diversion is left.
    (Its file list was compared with a plain bootstrap's once: identical; see the README.)"""
    profile = load_profile("pi3b-arm64", env={}).profile
    from rpibuild.build.base_finish import finishing_profile

    base = ensure_base(make_plan(profile).base_profiles.build, engine, finisher=finishing_profile(profile))
    code, output = engine.run(base.image, ["python3", "-c", _PYC_CHECK])
    assert code == 0, output
    report = json.loads(output.strip().splitlines()[-1])
    assert report["owned"] > 500 and report["elf"], report
    assert report["bad"] == [] and report["missing"] == [], report
    certs = (
        "set -e; n=$(grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt); "
        "links=$(find /etc/ssl/certs -name '*.pem' -type l | wc -l); "
        "outside=$(find /etc/ssl/certs -type l ! -exec test -e {} \\; -print | wc -l); "
        'echo "$n $links $outside"; ! grep -q rpibuild /var/lib/dpkg/diversions; '
        "test ! -e /usr/bin/py3compile.rpibuild-real; py3compile --help >/dev/null"
    )
    code, output = engine.run(base.image, ["sh", "-c", certs])
    assert code == 0, output
    bundle, links, dangling = map(int, output.split()[-3:])
    assert bundle >= 100 and bundle == links, output
    assert dangling == 0, "every certificate link resolves inside the image"

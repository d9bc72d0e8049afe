"""The files a CI job uploads for a profile, and a manifest that says exactly what they are.

They come out of the extension-stage image (``build_profile(..., target="extension")``, cache
hits when the full image was built), read from a created, never started container with
``get_archive``: libqpu and its headers, the torch_qpu wheel and the torch wheel the build
made or downloaded. ``manifest.json`` records the profile, the platform, the images, the
versions (from the image labels), and the sha256, size and ELF machine of every file (for
wheels: of every shared object inside), and the check that every ELF file is for the
profile's platform. Beside them, ``sbom.cdx.json``: the software bill of materials of the
image that ships (``publish.sbom``). A mismatch fails the command *after* the manifest is written, so CI can
still upload it and show what went wrong.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rpibuild import __version__
from rpibuild.build.pipeline import build_profile
from rpibuild.build.sources import file_sha256
from rpibuild.config.model import Profile
from rpibuild.engine import BuildEvent, Engine
from rpibuild.engine.tar_stream import open_tar_stream
from rpibuild.errors import BuildError, ConfigError, ImageMissing
from rpibuild.export import elf
from rpibuild.export.rootfs import export_profile
from rpibuild.planning.naming import image_labels, image_tags, qpulib_revision, torch_label
from rpibuild.platforms import Platform
from rpibuild.torch_routes import route_of

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = 1
# (folder in the image, folder in OUT, which of its entries to take): all required with qpulib on
QPULIB_PATHS: tuple[tuple[str, str, str], ...] = (
    ("/usr/local/lib", "lib", "libqpu.so*"),
    ("/usr/local/include/qpulib", "include/qpulib", "*"),
    ("/usr/local/share/qpulib", "share/qpulib", "*"),
)
WHEELS_PATH = "/opt/rpibuild/wheels"
WHEEL_PATTERNS = ("torch-*.whl", "torch_qpu-*.whl")
_SHARED_OBJECT = re.compile(r"\.so(\.\d+)*$")


@dataclass
class ArtifactsResult:
    """What ``collect`` wrote; ``manifest`` is the dict saved as manifest.json."""

    output: Path
    manifest: dict[str, object]
    files: list[Path] = field(default_factory=list)

    @property
    def mismatches(self) -> list[str]:
        check = self.manifest["elf_check"]
        assert isinstance(check, dict)
        return list(check["mismatches"])


# ---------------------------------------------------------------- copying out of a container


def _safe_relative(name: str) -> PurePosixPath | None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        return None
    return path


def copy_out(
    engine: Engine,
    container: str,
    source: str,
    destination: Path,
    patterns: tuple[str, ...] = ("*",),
) -> list[Path] | None:
    """Copy the entries of folder ``source`` whose top-level name matches a pattern to ``destination``.

    Regular files keep their mode bits (not owners: artifacts are for any user); symlinks
    are kept when they point beside themselves (``libqpu.so -> libqpu.so.1``). Returns the
    files written, or None when ``source`` does not exist in the image.
    """
    stream = engine.get_archive(container, source)
    if stream is None:
        return None
    written: list[Path] = []
    top = PurePosixPath(source).name
    with open_tar_stream(stream) as archive:
        for member in archive:
            relative = _safe_relative(member.name)
            if relative is None or relative.parts[:1] != (top,) or len(relative.parts) < 2:
                continue
            inner = PurePosixPath(*relative.parts[1:])
            if not any(PurePosixPath(inner.parts[0]).match(pattern) for pattern in patterns):
                continue
            target = destination.joinpath(*inner.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.issym():
                link = PurePosixPath(member.linkname)
                if "/" in member.linkname or link.name in ("", "..", "."):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.unlink(missing_ok=True)
                target.symlink_to(member.linkname)
                written.append(target)
            elif member.isfile():
                handle = archive.extractfile(member)
                assert handle is not None
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as out:
                    while data := handle.read(1 << 20):
                        out.write(data)
                target.chmod(member.mode & 0o755)
                written.append(target)
    return written


# ---------------------------------------------------------------- describing files


def _kind(relative: str) -> str:
    if relative.endswith(".whl"):
        return "wheel"
    if relative.startswith("rootfs/"):
        return "rootfs"
    if relative.startswith("lib/"):
        return "library"
    if relative.startswith("include/"):
        return "header"
    return "data"


def describe_file(path: Path, root: Path) -> dict[str, object]:
    """The manifest entry of one file: path, kind, size, sha256, ELF (wheels: of their .so files)."""
    relative = path.relative_to(root).as_posix()
    entry: dict[str, object] = {"path": relative, "kind": _kind(relative)}
    if path.is_symlink():
        entry["symlink"] = str(path.readlink())
        return entry
    entry["size"] = path.stat().st_size
    entry["sha256"] = file_sha256(path)
    if entry["kind"] == "wheel":
        entry["shared_objects"] = describe_wheel(path)
    elif entry["kind"] != "rootfs":
        header = elf.read_header(path)
        entry["elf"] = header.as_dict() if header else None
    return entry


def describe_wheel(path: Path) -> list[dict[str, object]]:
    """Every shared object (``*.so``, ``*.so.N``) inside a wheel, with its hash and ELF header."""
    objects = []
    with zipfile.ZipFile(path) as wheel:
        for info in wheel.infolist():
            if info.is_dir() or not _SHARED_OBJECT.search(info.filename):
                continue
            digest = hashlib.sha256()
            head = b""
            with wheel.open(info) as member:
                while data := member.read(1 << 20):
                    if not head:
                        head = data[: elf.HEADER_SIZE]
                    digest.update(data)
            header = elf.parse_header(head)
            objects.append(
                {
                    "path": info.filename,
                    "size": info.file_size,
                    "sha256": digest.hexdigest(),
                    "elf": header.as_dict() if header else None,
                }
            )
    return objects


def elf_check(files: list[dict[str, object]], platform: Platform) -> dict[str, object]:
    """Check every ELF file (and every .so inside a wheel) against the platform."""
    mismatches: list[str] = []
    checked = 0

    def check(name: str, header: object) -> None:
        nonlocal checked
        if not isinstance(header, dict):
            return
        checked += 1
        problem = elf.mismatch(elf.ElfHeader.from_dict(header), platform)
        if problem:
            mismatches.append(f"{name} {problem}")

    for entry in files:
        if "shared_objects" in entry:
            for inner in entry["shared_objects"]:  # type: ignore[attr-defined]
                check(f"{entry['path']}!{inner['path']}", inner["elf"])
        else:
            check(str(entry["path"]), entry.get("elf"))
    return {"expected": elf.expected(platform), "checked": checked, "mismatches": mismatches}


# ---------------------------------------------------------------- the manifest


def _wheel_version(files: list[Path], project: str) -> str | None:
    for path in files:
        match = re.match(rf"{project}-([^-]+)-", path.name)
        if match:
            return match.group(1)
    return None


def image_record(engine: Engine, reference: str | None) -> dict[str, object] | None:
    if reference is None:
        return None
    info = engine.image(reference)
    if info is None:
        return None
    return {
        "reference": reference,
        "id": info.id,
        "digests": engine.repo_digests(reference),
        "platform": info.platform,
    }


def build_manifest(
    profile: Profile,
    engine: Engine,
    out: Path,
    *,
    image: str,
    runtime_image: str | None,
    files: list[Path],
) -> dict[str, object]:
    """Describe ``files`` (under ``out``) with the profile, images, labels and the ELF check."""
    runtime = image_record(engine, runtime_image)
    # Only the runtime stage carries the LABELs; without that image, the labels the profile
    # renders (the same values, by construction) stand in, and the manifest says which.
    labels, labels_source = image_labels(profile), "profile"
    if runtime is not None:
        info = engine.image(str(runtime["reference"]))
        if info is not None and info.labels.get("io.rpibuild.profile") == profile.name:
            ours = ("io.rpibuild.", "org.opencontainers.")
            labels = {k: v for k, v in info.labels.items() if k.startswith(ours)}
            labels_source = "runtime image"
    entries = [describe_file(path, out) for path in sorted(files)]
    library = next(
        (str(e["path"]) for e in entries if e["kind"] == "library" and "symlink" not in e),
        None,
    )
    platform = profile.target
    if profile.qpulib.enabled:
        qpulib: dict[str, object] = {"enabled": True, "mode": profile.qpulib.mode, "library": library}
    else:
        qpulib = {
            "enabled": False,
            "library": None,
            "note": "qpulib.enabled is false in the profile: no libqpu was built; "
            "torch_qpu has only its cpu backend",
        }
    return {
        "schema": MANIFEST_SCHEMA,
        "generator": f"rpibuild {__version__}",
        "created": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "profile": profile.name,
        "platform": platform.name,
        "elf": {
            "machine": platform.elf_machine,
            "class": 32 if platform.elf_class == 1 else 64,
            "expected": elf.expected(platform),
        },
        "image": {**(image_record(engine, image) or {"reference": image}), "stage": "extension"},
        "runtime_image": runtime,
        "labels": labels,
        "labels_source": labels_source,
        "versions": {
            "rpibuild": labels.get("io.rpibuild.version", __version__),
            "torch": _wheel_version(files, "torch")
            or labels.get("io.rpibuild.torch.version", torch_label(profile)),
            "torch_qpu": _wheel_version(files, "torch_qpu"),
            "qpulib": labels.get("io.rpibuild.qpulib.commit", qpulib_revision(profile)),
            "qpulib_mode": labels.get("io.rpibuild.qpulib.mode"),
        },
        "qpulib": qpulib,
        "files": entries,
        "elf_check": elf_check(entries, platform),
    }


# ---------------------------------------------------------------- collecting


def _prepare_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"{out} exists and is not an empty folder", field="OUT", hint="give a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)


def collect_from_image(
    profile: Profile,
    engine: Engine,
    image: str,
    out: Path,
    *,
    runtime_image: str | None = None,
    extra_files: Iterable[Path] = (),
) -> ArtifactsResult:
    """Copy the artifacts out of the extension-stage ``image`` into ``out`` and write the manifest.

    ``out`` must already exist and be empty (``collect`` sees to it). Raises BuildError when
    a file the profile promises is missing, or when an ELF file is for another machine (the
    manifest is written first).
    """
    files: list[Path] = list(extra_files)
    missing: list[str] = []
    with engine.created_container(image, platform=profile.platform) as container:
        if profile.qpulib.enabled:
            for source, folder, pattern in QPULIB_PATHS:
                got = copy_out(engine, container, source, out / folder, (pattern,))
                if not got:
                    missing.append(f"{source}/{pattern}")
                files += got or []
        wheels = copy_out(engine, container, WHEELS_PATH, out / "wheels", WHEEL_PATTERNS) or []
        files += wheels
        if profile.extension.enabled and not any(w.name.startswith("torch_qpu-") for w in wheels):
            missing.append(f"{WHEELS_PATH}/torch_qpu-*.whl")
        if route_of(profile.torch.source).installs_torch and not any(
            w.name.startswith("torch-") for w in wheels
        ):
            missing.append(f"{WHEELS_PATH}/torch-*.whl")
    if missing:
        raise BuildError(
            f"{image} lacks {', '.join(missing)}",
            hint=f"is it the extension stage of {profile.name}? rebuild: rpibuild build -p {profile.name} "
            "--target extension",
        )
    manifest = build_manifest(profile, engine, out, image=image, runtime_image=runtime_image, files=files)
    # The SBOM describes the image that ships (the runtime one) when it is here, else this one.
    from rpibuild.publish import sbom

    shipped = runtime_image if runtime_image and engine.image(runtime_image) is not None else image
    manifest["sbom"] = sbom.write(engine, profile, shipped, out)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    result = ArtifactsResult(out, manifest, files)
    if result.mismatches:
        shown = "; ".join(result.mismatches[:5])
        more = f" (and {len(result.mismatches) - 5} more)" if len(result.mismatches) > 5 else ""
        raise BuildError(
            f"{len(result.mismatches)} file(s) are not for {profile.platform}: {shown}{more}",
            hint=f"manifest written to {out / MANIFEST}; check the profile's platform and the "
            "torch wheel it names, and that the binfmt handler ran the build (rpibuild doctor)",
        )
    return result


def collect(
    profile: Profile,
    engine: Engine,
    out: Path,
    *,
    build: bool = True,
    rootfs: bool = False,
    on_event: Callable[[BuildEvent], None] | None = None,
    on_step: Callable[[str], None] | None = None,
    on_rootfs_progress: Callable[[int, int], None] | None = None,
) -> ArtifactsResult:
    """Ensure the extension-stage image (unless ``build`` is False), then collect its artifacts.

    With ``rootfs`` the runtime image is ensured too and exported as ``rootfs/<profile>.tar.zst``.
    """
    _prepare_output(out)
    runtime_ref = image_tags(profile)[0]
    extension_ref = f"{runtime_ref}-extension"
    say = on_step or (lambda _text: None)
    if build:
        if rootfs:
            say(f"building {profile.name} (runtime image, for the rootfs)")
            build_profile(profile, engine, on_event=on_event)
        say(f"building {profile.name} up to the extension stage (cache hits when already built)")
        extension_ref = build_profile(profile, engine, target="extension", on_event=on_event).image
    elif engine.image(extension_ref) is None:
        raise ImageMissing(
            f"image {extension_ref} does not exist",
            hint=f"rpibuild build -p {profile.name} --target extension (or drop --no-build)",
        )
    extra: list[Path] = []
    if rootfs:
        (out / "rootfs").mkdir()
        tarball = out / "rootfs" / f"{profile.name}.tar.zst"
        say(f"exporting the root filesystem to {tarball}")
        export_profile(profile, engine, tarball, progress=on_rootfs_progress)
        extra.append(tarball)
    say(f"copying artifacts out of {extension_ref}")
    return collect_from_image(
        profile, engine, extension_ref, out, runtime_image=runtime_ref, extra_files=extra
    )

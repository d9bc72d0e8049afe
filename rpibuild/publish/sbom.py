"""A software bill of materials of a built image, in CycloneDX JSON (cyclonedx-python-lib).

What is in the image is read from the image itself through the engine, never by running it
(a created, never started container; its files copied out as tar streams):

- Debian packages from ``/var/lib/dpkg/status`` (name, version, architecture, source), with
  the licences named in each package's ``/usr/share/doc/PKG/copyright`` (machine-readable
  DEP-5 ``License:`` fields; a free-form file gives none, and the SBOM says so);
- Python distributions from every ``*.dist-info/METADATA`` in the venv and in Debian's
  dist-packages (name, version, licence);
- the pinned sources the profile built from: QPULib's commit and tree hash, Debian's pytorch
  source version, the torch wheel's sha256 where rpibuild has the wheel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import TYPE_CHECKING

from rpibuild import __version__
from rpibuild.config.model import Profile
from rpibuild.engine.tar_stream import open_tar_stream
from rpibuild.torch_routes import route_of

if TYPE_CHECKING:
    from cyclonedx.model.bom import Bom

    from rpibuild.engine import Engine

FILE_NAME = "sbom.cdx.json"
MEDIA_TYPE = "application/vnd.cyclonedx+json"
DPKG_STATUS = "/var/lib/dpkg/status"
DOC_DIR = "/usr/share/doc"
PYTHON_DIRS = ("/opt/rpibuild/venv/lib", "/usr/lib/python3/dist-packages", "/usr/local/lib")


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    architecture: str
    source: str = ""
    licenses: tuple[str, ...] = ()


@dataclass(frozen=True)
class PythonDistribution:
    name: str
    version: str
    license: str = ""
    location: str = ""


@dataclass
class Contents:
    """What an image holds, as read from its files."""

    debian: list[DebianPackage] = field(default_factory=list)
    python: list[PythonDistribution] = field(default_factory=list)


# ---------------------------------------------------------------- reading the image


def read_image(engine: Engine, image: str, platform: str | None = None) -> Contents:
    """dpkg's database, the copyright files and the dist-info metadata of ``image``."""
    with engine.created_container(image, platform=platform) as container:
        status = b"".join(_files(engine, container, DPKG_STATUS, lambda name: True).values())
        links: dict[str, str] = {}
        licenses = {
            name.split("/")[1]: debian_licenses(text.decode(errors="replace"))
            for name, text in _files(engine, container, DOC_DIR, _is_copyright, links).items()
        }
        # Debian links some packages' doc folders to another's (libgcc-s1 -> gcc-14-base).
        for name, target in links.items():
            parts = name.split("/")
            if len(parts) == 2 and "/" not in target and target in licenses:
                licenses.setdefault(parts[1], licenses[target])
        python: dict[tuple[str, str], PythonDistribution] = {}
        for where in PYTHON_DIRS:
            for name, text in _files(engine, container, where, _is_metadata).items():
                folder = f"{where.rsplit('/', 1)[0]}/{name.rsplit('/', 1)[0]}"
                dist = python_distribution(text.decode(errors="replace"), folder)
                if dist is not None:
                    python.setdefault((dist.name.lower(), dist.version), dist)
    debian = [
        DebianPackage(p.name, p.version, p.architecture, p.source, licenses.get(p.name, ()))
        for p in dpkg_status(status.decode(errors="replace"))
    ]
    return Contents(debian, sorted(python.values(), key=lambda d: d.name.lower()))


def _is_copyright(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 3 and parts[2] == "copyright"


def _is_metadata(name: str) -> bool:
    parts = name.split("/")
    return parts[-1] == "METADATA" and len(parts) >= 2 and parts[-2].endswith(".dist-info")


def _files(
    engine: Engine,
    container: str,
    path: str,
    wanted: Callable[[str], bool],
    links: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """Regular files under ``path`` whose tar name passes ``wanted`` (others are skipped unread);
    symbolic links go to ``links`` (name -> target) when it is given."""
    stream = engine.get_archive(container, path)
    if stream is None:
        return {}
    found: dict[str, bytes] = {}
    with open_tar_stream(stream) as archive:
        for member in archive:
            if member.issym() and links is not None:
                links[member.name] = member.linkname
            if member.isfile() and wanted(member.name):
                extracted = archive.extractfile(member)
                if extracted is not None:
                    found[member.name] = extracted.read()
    return found


# ---------------------------------------------------------------- parsing (pure)


def dpkg_status(text: str) -> Iterator[DebianPackage]:
    """Installed packages from dpkg's status file (RFC 822-style stanzas)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if not fields.get("Package") or "installed" not in fields.get("Status", "").split()[-1:]:
            continue
        source = fields.get("Source", "").split(" ")[0]
        yield DebianPackage(
            fields["Package"], fields.get("Version", ""), fields.get("Architecture", ""), source
        )


def debian_licenses(copyright_text: str) -> tuple[str, ...]:
    """The licence names a machine-readable (DEP-5) copyright file declares, in order."""
    if not re.search(r"^Format:\s*\S", copyright_text, re.MULTILINE):
        return ()
    names: list[str] = []
    for match in re.finditer(r"^License:[ \t]*(\S[^\n]*)", copyright_text, re.MULTILINE):
        name = match.group(1).strip()
        if name and name not in names:
            names.append(name)
    return tuple(names)


def python_distribution(metadata: str, location: str) -> PythonDistribution | None:
    """Name, version and licence from a dist-info METADATA file (core metadata)."""
    headers = HeaderParser().parsestr(metadata, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    license_text = headers.get("License-Expression") or ""
    if not license_text:
        single = (headers.get("License") or "").strip()
        if single and "\n" not in single and len(single) <= 80:
            license_text = single
    if not license_text:
        classifiers = [c.rsplit("::", 1)[-1].strip() for c in headers.get_all("Classifier") or []
                       if c.startswith("License ::")]  # fmt: skip
        license_text = " AND ".join(dict.fromkeys(classifiers))
    return PythonDistribution(str(name), str(version), license_text, location)


# ---------------------------------------------------------------- the document


def pinned_sources(profile: Profile, torch_wheel_sha256: str | None = None) -> list[dict[str, str]]:
    """The sources the profile pins, as (name, version, pin) facts for the SBOM."""
    out: list[dict[str, str]] = []
    qpulib = profile.qpulib
    if qpulib.enabled and not qpulib.path:
        out.append(
            {
                "name": "QPULib",
                "version": qpulib.commit,
                "url": qpulib.url.format(commit=qpulib.commit),
                "tree_sha256": qpulib.tree_sha256 or "",
            }
        )
    torch = profile.torch
    route = route_of(torch.source)
    out += route.pinned_sources(torch)
    if route.installs_torch:
        sha = torch_wheel_sha256 or torch.sha256 or ""
        out.append({"name": "torch wheel", "version": torch.version or "", "sha256": sha})
    return out


def build_bom(
    profile: Profile, image: str, image_id: str, contents: Contents, sources: list[dict[str, str]]
) -> Bom:
    """The CycloneDX document: the image as the subject, every package a component."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.license import DisjunctiveLicense
    from packageurl import PackageURL

    bom = Bom()
    root = Component(
        name=image,
        bom_ref=f"image:{image}",
        type=ComponentType.CONTAINER,
        version=image_id,
        properties=[
            Property(name="rpibuild:profile", value=profile.name),
            Property(name="rpibuild:platform", value=profile.platform),
            Property(name="rpibuild:version", value=__version__),
        ],
    )
    bom.metadata.component = root
    arch = profile.target.debian_arch
    for package in contents.debian:
        qualifiers = {"arch": package.architecture or arch}
        if package.source and package.source != package.name:
            qualifiers["upstream"] = package.source
        bom.components.add(
            Component(
                name=package.name,
                version=package.version,
                bom_ref=f"deb:{package.name}:{package.architecture}",
                purl=PackageURL("deb", "debian", package.name, package.version, qualifiers),
                licenses=[DisjunctiveLicense(name=n) for n in package.licenses],
                properties=[]
                if package.licenses
                else [Property(name="rpibuild:license", value="not machine-readable")],
            )
        )
    for dist in contents.python:
        bom.components.add(
            Component(
                name=dist.name,
                version=dist.version,
                bom_ref=f"pypi:{dist.name.lower()}:{dist.version}:{dist.location}",
                purl=PackageURL("pypi", None, dist.name.lower(), dist.version),
                licenses=[DisjunctiveLicense(name=dist.license)] if dist.license else [],
                properties=[Property(name="rpibuild:location", value=dist.location)],
            )
        )
    for source in sources:
        hashes = []
        if source.get("sha256"):
            hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=source["sha256"]))
        bom.components.add(
            Component(
                name=source["name"],
                version=source.get("version") or None,
                bom_ref=f"source:{source['name']}",
                hashes=hashes,
                properties=[
                    Property(name=f"rpibuild:{key}", value=value)
                    for key, value in source.items()
                    if key not in ("name", "version", "sha256") and value
                ],
            )
        )
    bom.register_dependency(root, bom.components)  # the image holds each of them
    return bom


def to_json(bom: Bom) -> str:
    """CycloneDX 1.6 JSON, validated by the library's own serializer."""
    from cyclonedx.output.json import JsonV1Dot6

    return str(JsonV1Dot6(bom).output_as_string(indent=2))


def make(
    engine: Engine, profile: Profile, image: str, *, torch_wheel_sha256: str | None = None
) -> dict[str, object]:
    """The SBOM of the local ``image`` built from ``profile``, as a JSON object."""
    info = engine.image(image)
    image_id = info.id if info is not None else ""
    contents = read_image(engine, image, platform=profile.platform)
    bom = build_bom(profile, image, image_id, contents, pinned_sources(profile, torch_wheel_sha256))
    data: dict[str, object] = json.loads(to_json(bom))
    return data


def write(engine: Engine, profile: Profile, image: str, folder: Path) -> dict[str, object]:
    """Write ``image``'s SBOM to ``folder/sbom.cdx.json``; returns its entry for manifest.json."""
    import hashlib

    text = json.dumps(make(engine, profile, image), indent=2) + "\n"
    path = folder / FILE_NAME
    path.write_text(text, encoding="utf-8")
    return {
        "path": FILE_NAME,
        "format": "CycloneDX 1.6 JSON",
        "image": image,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def package_names(document: dict[str, object], kind: str = "deb") -> set[str]:
    """The names of the document's components of one purl kind (``deb``, ``pypi``)."""
    components = document.get("components")
    names: set[str] = set()
    for component in components if isinstance(components, Iterable) else ():
        if isinstance(component, dict) and str(component.get("purl", "")).startswith(f"pkg:{kind}/"):
            names.add(str(component["name"]))
    return names

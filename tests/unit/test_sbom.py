"""The SBOM's pure parts: dpkg status, DEP-5 licences, dist-info metadata, pinned sources.

The round trip through a real image and registry is in tests/integration/test_registry.py.
"""

from __future__ import annotations


def test_dpkg_status_keeps_installed_packages_only() -> None:
    from rpibuild.publish.sbom import dpkg_status

    text = (
        "Package: bash\nStatus: install ok installed\nVersion: 5.2-2\nArchitecture: arm64\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: libfoo1\nStatus: install ok installed\nSource: foo (1.0-1)\nVersion: 1.0-1+b1\n"
        "Architecture: arm64\nDescription: x\n continued line: with a colon\n"
    )
    packages = list(dpkg_status(text))
    assert [(p.name, p.version, p.source) for p in packages] == [
        ("bash", "5.2-2", ""),
        ("libfoo1", "1.0-1+b1", "foo"),
    ]


def test_licences_only_from_machine_readable_copyright_files() -> None:
    from rpibuild.publish.sbom import debian_licenses

    dep5 = (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nLicense: GPL-2+\n\nFiles: lib/*\nLicense: MIT\n\nLicense: GPL-2+\n text\n"
    )
    assert debian_licenses(dep5) == ("GPL-2+", "MIT")
    assert debian_licenses("This is free software; License: whatever\n") == ()


def test_python_metadata_licence_fallbacks() -> None:
    from rpibuild.publish.sbom import python_distribution

    expr = python_distribution("Name: a\nVersion: 1\nLicense-Expression: MIT\n", "/x")
    assert expr is not None and expr.license == "MIT"
    classifier = python_distribution(
        "Name: b\nVersion: 2\nClassifier: License :: OSI Approved :: BSD License\n", "/x"
    )
    assert classifier is not None and classifier.license == "BSD License"
    assert python_distribution("Version: 2\n", "/x") is None


def test_pinned_sources_name_qpulib_commit_tree_and_debian_patches() -> None:
    from rpibuild.config import load_profile
    from rpibuild.publish.sbom import pinned_sources

    armv7 = load_profile("pi3b-armv7", [], env={}).profile
    sources = {s["name"]: s for s in pinned_sources(armv7, torch_wheel_sha256="ab" * 32)}
    assert sources["QPULib"]["version"] == armv7.qpulib.commit
    assert sources["QPULib"]["tree_sha256"] == armv7.qpulib.tree_sha256
    debian = sources["pytorch (Debian source)"]
    assert debian["version"] == armv7.torch.version
    assert any(key.startswith("patch 0001-") for key in debian)
    assert sources["torch wheel"]["sha256"] == "ab" * 32

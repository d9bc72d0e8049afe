"""Turn a profile into a Dockerfile and a build context folder, without touching the engine.

Templates live in ``dockerfiles/`` and are rendered with ``StrictUndefined`` (a typo in a
template is an error, not an empty string); every value that reaches a shell line goes
through the ``q`` filter (``shlex.quote``), every Dockerfile string through ``dq``. Values
that would be part of a program (the apt mirror) go in as files, never as text.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from rpibuild import __version__, resources
from rpibuild.build import sources
from rpibuild.build.base import base_reference
from rpibuild.config import grammar
from rpibuild.config.model import Profile
from rpibuild.errors import ConfigError
from rpibuild.export import elf
from rpibuild.host import ca
from rpibuild.host.build_platform import cross_base_profile
from rpibuild.planning.bases import Bases, plan_bases
from rpibuild.planning.keys import CONTEXT_IGNORE
from rpibuild.planning.naming import image_labels, image_tags, qpulib_revision
from rpibuild.planning.stages import StagePlan, plan_stages
from rpibuild.platforms import get_platform
from rpibuild.text import forbidden_character
from rpibuild.torch_routes.debian import wheel_key
from rpibuild.torch_routes.route import TARGET

PIP_CONF_SECRET = "pip-conf"
APT_MIRROR_SECRET = "apt-mirror"
# The build platform's packages: Debian's cross toolchain, ccache, and the target's Python
# headers and sysconfig through multiarch (the extension is built against them).
CROSS_PACKAGES = (
    "crossbuild-essential-{arch}",
    "ccache",
    "make",
    "python3",
    "python3-setuptools",
    "python3-wheel",
    "python3-pip",
    "python3-venv",  # the target's venv is written here (cross.j2)
    "python3-packaging",  # target_site.py evaluates wheels' dependency markers for the target
    "libpython3-dev:{arch}",
)
# What never goes into a build context from the extension's folder.
_CONTEXT_IGNORE = shutil.ignore_patterns(*CONTEXT_IGNORE)


@dataclass(frozen=True)
class Rendered:
    """What a build needs: the Dockerfile, the files it COPYs, and how to name the result."""

    dockerfile: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    files: dict[str, Path] = field(default_factory=dict)  # context path -> host source
    dirs: dict[str, Path] = field(default_factory=dict)  # context dir -> host dir
    # BuildKit secrets (id -> content): mounted into the RUN steps that need them, never
    # part of the context, of a layer or of the history.
    secrets: dict[str, str] = field(default_factory=dict)
    # torch.source debian, cross: the wheel's content key (rpibuild.torch_routes.debian.wheel_key).
    torch_key: str = ""

    def write_secrets(self, directory: Path) -> dict[str, Path]:
        """Write each secret to a private file in ``directory`` (outside the context)."""
        paths = {}
        for secret_id, content in self.secrets.items():
            path = directory / secret_id
            path.touch(mode=0o600)
            path.write_text(content, encoding="utf-8")
            paths[secret_id] = path
        return paths

    def write(self, directory: Path) -> Path:
        """Materialise the build context in ``directory`` (created; must be empty if it exists).

        A folder that cannot be created or written is the user's to fix: a ConfigError
        (exit 2) naming it, not a traceback.
        """
        try:
            directory.mkdir(parents=True, exist_ok=True)
            if any(directory.iterdir()):
                raise ConfigError(f"output folder {directory} is not empty", field="--output")
            (directory / "Dockerfile").write_text(self.dockerfile, encoding="utf-8")
            for target, source in self.files.items():
                dest = directory / target
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
            for target, source in self.dirs.items():
                shutil.copytree(source, directory / target, ignore=_CONTEXT_IGNORE, symlinks=True)
        except (OSError, shutil.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            where = getattr(exc, "filename", None) or directory
            raise ConfigError(
                f"cannot write the build context to {where}: {reason}", field="--output"
            ) from None
        return directory


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resources.dockerfiles_dir()),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.filters["dq"] = dockerfile_string
    return env


def dockerfile_string(value: object) -> str:
    """A Dockerfile double-quoted string (LABEL): no variable expansion, no line break.

    The engine expands ``$VAR`` in LABEL values and reads backslash escapes, so ``\\``,
    ``"`` and ``$`` are escaped; values are one line (checked when the profile is loaded).
    """
    text = str(value)
    if forbidden_character(text):
        raise ConfigError("a label holds a control character", field="image.labels")
    return '"' + re.sub(r'(["\\$])', r"\\\1", text) + '"'


def _ca_bundle(profile: Profile) -> Path | None:
    value = profile.network.ca_bundle
    if not value:
        return None
    if value == "host":
        return ca.ca_bundle()
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"CA bundle {value} does not exist", field="network.ca_bundle")
    return path


def cross_values(profile: Profile, plan: StagePlan, torch_key: str) -> dict[str, object]:
    """Template values of the build-platform stages (all of them, so templates never guess)."""
    target = profile.target
    values: dict[str, object] = {
        "cross": plan.cross,
        "cross_base_ref": "",
        "build_arch": "",
        "cross_packages": [],
        "torch_build_packages": [],
        "torch_build_key": "",
        "torch_c10_mounts": "",
        "elf_spec": target.elf_spec,
    }
    if not plan.cross or plan.build_platform is None:
        return values
    arch = target.debian_arch
    values.update(
        cross_base_ref=base_reference(cross_base_profile(profile)),
        build_arch=get_platform(plan.build_platform).debian_arch,
        cross_packages=[p.format(arch=arch) for p in CROSS_PACKAGES],
    )
    values.update(plan.route.cross_values(profile, torch_key))
    return values


# Where a build's pip steps see the pip/ folder of a local source mirror (a bind mount).
PIP_MIRROR_TARGET = "/opt/rpibuild/pip-mirror"


def pip_conf(profile: Profile) -> str | None:
    """pip's settings for the build: the profile's index, or, with a local source mirror that
    holds a pip/ folder (``rpibuild sources fetch --all``), that folder and no index at all."""
    if sources.pip_mirror() is not None:
        return f"[global]\nfind-links = {PIP_MIRROR_TARGET}\nno-index = true\n"
    lines = []
    if profile.network.pip_index_url:
        lines.append(f"index-url = {profile.network.pip_index_url}")
    if profile.network.pip_extra_index_url:
        lines.append(f"extra-index-url = {profile.network.pip_extra_index_url}")
    return "[global]\n" + "\n".join(lines) + "\n" if lines else None


def secrets(profile: Profile) -> dict[str, str]:
    """The BuildKit secrets of a build (id -> content): the index settings and the apt mirror,
    which may carry credentials, so never a context file, a layer or history."""
    found: dict[str, str] = {}
    conf = pip_conf(profile)
    if conf is not None:
        found[PIP_CONF_SECRET] = conf
    if profile.network.apt_mirror:
        found[APT_MIRROR_SECRET] = profile.network.apt_mirror + "\n"
    return found


def render(
    profile: Profile,
    *,
    base_ref: str | None = None,
    qpulib_src: Path | None = None,
    stored_torch: Path | None = None,
    torch_key: str | None = None,
    stage_plan: StagePlan | None = None,
    bases: Bases | None = None,
) -> Rendered:
    """Render the Dockerfile and list the context files.

    ``qpulib_src`` is the QPULib tree to copy in (see ``rpibuild.build.sources``); without it the
    context lists none, which is fine for printing the Dockerfile. ``stored_torch`` is the
    stored wheel of ``torch.source: debian``; ``torch_key`` its key when already known
    (else it is computed here: the hash of the stages rendered without it). ``stage_plan``
    is the build's stage decisions (rpibuild.planning.stages) and ``bases`` its bases
    (rpibuild.planning.bases), decided here when not given.
    """
    plan = stage_plan or plan_stages(profile, torch_stored=stored_torch is not None)
    if torch_key is None:
        torch_key = torch_wheel_key(profile, plan)
    if bases is None:
        bases = plan_bases(profile, plan, plan.route.debian_packages(profile, stored_torch))
    return _render(profile, plan, bases, base_ref, qpulib_src, stored_torch, torch_key)


def torch_wheel_key(profile: Profile, plan: StagePlan | None = None) -> str:
    """The key of the wheel ``torch.source: debian`` compiles ("" for other routes): the hash of
    the stages that build it as rendered, with the files they copy (rpibuild.torch_routes.debian)."""
    plan = plan or plan_stages(profile)
    if not plan.route.keyed or not plan.cross:
        return ""
    # The wheel's stages exist only while it is not stored; and the key is not in them (only
    # in the torch-c10 check's), so rendering without it gives the text the key hashes.
    unstored = plan if not plan.torch_stored else plan_stages(profile)
    draft = _render(profile, unstored, plan_bases(profile, unstored, None), None, None, None, "")
    return wheel_key(profile, draft.dockerfile, draft.files, draft.dirs)


def _render(
    profile: Profile,
    plan: StagePlan,
    bases: Bases,
    base_ref: str | None,
    qpulib_src: Path | None,
    stored_torch: Path | None,
    torch_key: str,
) -> Rendered:
    images = resources.images_dir()
    # op_sweep.py runs beside verify.py in the image (verify --op-sweep finds it there), and
    # both verify.py and the cross stages' elf_gate.py read binaries with rpibuild's ELF reader.
    files: dict[str, Path] = {
        "rpibuild/verify.py": images / "verify" / "verify.py",
        "rpibuild/op_sweep.py": images / "verify" / "op_sweep.py",
        "rpibuild/elf.py": Path(elf.__file__),
    }
    cross = plan.cross
    if cross:
        files["rpibuild/elf_gate.py"] = images / "verify" / "elf_gate.py"
    if cross:  # the build platform installs torch and the extension for the target
        files["rpibuild/target_site.py"] = images / "cross" / "target_site.py"
    dirs: dict[str, Path] = {}
    names: dict[str, str | None] = {
        "ca_bundle": None,
        "torch_wheel": None,
        "pip_mirror": None,
        "debian_archive": None,
    }
    ca = _ca_bundle(profile)
    if ca is not None:
        names["ca_bundle"] = "rpibuild/ca-bundle.pem"
        files["rpibuild/ca-bundle.pem"] = ca
    build_secrets = secrets(profile)

    torch = profile.torch
    wheel_name = grammar.wheel_name(torch.wheel) if torch.wheel else ""
    route_files = plan.route.context(profile, images, stored_torch)
    files.update(route_files.files)
    dirs.update(route_files.dirs)
    names["torch_wheel"] = route_files.wheel
    if profile.qpulib.enabled:
        dirs["qpulib"] = images / "qpulib"
        if qpulib_src is not None:
            dirs["qpulib-src"] = qpulib_src
    if profile.extension.enabled:
        dirs["torch-qpu"] = Path(profile.extension.path or images / "torch-qpu")
    pip_mirror = sources.pip_mirror()
    if pip_mirror is not None:
        dirs["pip-mirror"] = pip_mirror
        names["pip_mirror"] = "pip-mirror"
    debian_archive = sources.debian_archive()
    if debian_archive is not None and "torch-debian" in dirs:  # the source is fetched in this build
        dirs["debian-archive"] = debian_archive
        names["debian_archive"] = "debian-archive"

    build_packages = list(profile.apt.packages)
    # Compilers go into the first target stage that compiles (after system and torch, so the
    # system layers are the same with and without cross compilation): torch from git,
    # else qpulib/extension when they are not cross-compiled.
    compilers = [p for p in profile.apt.compiler_packages if p not in build_packages]
    compiles_on_target = plan.compiles_on_target
    runtime_packages = list(profile.apt.runtime_packages)
    if profile.image.keep_build_tools:  # compilers included: the image is for building on the Pi
        tools = [*build_packages, *profile.apt.compiler_packages]
        runtime_packages += [p for p in dict.fromkeys(tools) if p not in runtime_packages]
    labels = image_labels(profile)
    text = (
        environment()
        .get_template("Dockerfile.j2")
        .render(
            rpibuild_version=__version__,
            profile=profile,
            platform=profile.target,
            base_ref=base_ref or base_reference(bases.build),
            runtime_base_ref=base_reference(bases.runtime),
            packages_folded=bases.packages_folded,
            wheel_packages_folded=bases.wheel_packages_folded,
            # The target runs pip to build something (only without a cross build): it gets
            # pip, wheel and setuptools of its own; otherwise nothing is upgraded there.
            target_builds_wheels=not cross
            and (compiles_on_target or profile.extension.enabled or plan.route.compiled_on == TARGET),
            network=profile.network,
            apt=profile.apt,
            build_packages=build_packages,
            torch_compilers=compilers
            if plan.route.compiled_on == TARGET and not bases.packages_folded
            else [],
            target_compilers=compilers if compiles_on_target and plan.route.compiled_on != TARGET else [],
            runtime_packages=runtime_packages,
            torch=torch,
            route=plan.route,
            stage_names=plan.names,
            torch_wheel_name=wheel_name,
            torch_cross_install=plan.torch_installed_natively,
            qpulib=profile.qpulib,
            qpulib_revision=qpulib_revision(profile),
            extension=profile.extension,
            verify=profile.verify,
            verify_cpu=plan.verify_cpu,
            stage_places=[(stage.name, stage.place) for stage in plan.stages],
            emulator_tests=plan.emulator_tests,
            image=profile.image,
            labels=labels,
            files=names,
            secrets=build_secrets,
            **cross_values(profile, plan, torch_key),
        )
    )
    return Rendered(text, image_tags(profile), labels, files, dirs, build_secrets, torch_key)
